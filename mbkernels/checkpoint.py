"""Loading a whole model's checkpoint without half-applying it.

``Balancer.load_state_dict`` validates before it copies, so a state saved for
another ``num_tasks`` raises ``ValueError`` and changes nothing. But when the
balancer is a submodule, ``model.load_state_dict`` copies modules in order and
would already have overwritten the modules before it. :func:`load_state_dict`
validates every balancer in the model first, then loads.

Resuming is bit-identical when the model, the optimizer and the balancer are
all restored (the balancer's state is its rule state, ``step`` and ``weights``;
:attr:`Balancer.stats` is a record of the last step and is not saved).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .balancer import Balancer


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if any :class:`Balancer` inside ``module`` (or ``module``
    itself) cannot load its part of ``state_dict``. Changes nothing."""
    for name, sub in module.named_modules():
        if isinstance(sub, Balancer):
            sub.check_state_dict(state_dict, prefix=f"{name}." if name else "")


def load_state_dict(module: nn.Module, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
    """``module.load_state_dict(state_dict, strict)`` after :func:`check_state_dict`."""
    check_state_dict(module, state_dict)
    return module.load_state_dict(state_dict, strict=strict)
