"""Loading a whole model's checkpoint without half-applying it.

``Balancer.load_state_dict`` validates before it copies: a missing or unexpected
entry, a state saved for another ``num_tasks``, rule or rule configuration, a wrong
shape or kind of dtype, a non-finite or out-of-range value raise ``ValueError`` and
change nothing. But when the balancer is a submodule, ``model.load_state_dict``
copies modules in order, and PyTorch reports missing keys and size mismatches only
after copying everything else. :func:`load_state_dict` validates first: every balancer
in the model (as above) and, for the whole model, the keys (when ``strict``) and the
shape of every tensor, the checks PyTorch itself makes. Then it loads.

Resuming is bit-identical when the model, the optimizer and the balancer are
all restored (the balancer's state is its rule state, ``step``, ``weights`` and
``refused_streak``; :attr:`Balancer.stats` is a record of the last step and is not
saved).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .balancer import Balancer

#: How many keys an error message lists before it says "... and N more".
_LISTED = 8


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Any], strict: bool = True) -> None:
    """Raise ``ValueError`` if ``module.load_state_dict(state_dict, strict)`` would fail or
    load a balancer state that does not fit: every :class:`Balancer` inside ``module`` (or
    ``module`` itself) checks its entries, and the whole model's keys (``strict``) and
    tensor shapes are compared. Changes nothing."""
    for name, sub in module.named_modules():
        if isinstance(sub, Balancer):
            sub.check_state_dict(state_dict, prefix=f"{name}." if name else "", strict=strict)
    own = module.state_dict(keep_vars=True)
    if strict:
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not match the model: missing keys {_listed(missing)}, "
                f"unexpected keys {_listed(unexpected)}; nothing was loaded"
            )
    for key, value in own.items():
        saved = state_dict.get(key)
        if isinstance(value, Tensor) and isinstance(saved, Tensor):
            if saved.shape != value.shape:
                raise ValueError(
                    f"state_dict entry {key!r} has shape {tuple(saved.shape)}, the model's "
                    f"has {tuple(value.shape)}; nothing was loaded"
                )


def load_state_dict(module: nn.Module, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
    """``module.load_state_dict(state_dict, strict)`` after :func:`check_state_dict`."""
    check_state_dict(module, state_dict, strict=strict)
    return module.load_state_dict(state_dict, strict=strict)


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return f"{keys[:_LISTED]}{more}"
