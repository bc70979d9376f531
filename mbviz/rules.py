"""Balancing rules by name, for the runner, the figures and the widgets.

The rules themselves live in :mod:`mbkernels.rules`. When that package offers a
registry (``mbkernels.rules.make_rule`` and a list of names), it is used as is,
so every rule added there shows up here; the two core rules are always known.
"""

from __future__ import annotations

from typing import Any

import mbkernels.rules as _mkr
from mbkernels import Balancer
from mbkernels.rules import Equal, MultiBalanceRule, Rule

#: Rules always available (mbkernels core).
_CORE: dict[str, type[Rule]] = {"equal": Equal, "multibalance": MultiBalanceRule}

#: A readable label per rule name, for legends.
LABELS: dict[str, str] = {
    "equal": "Equal",
    "fixed": "Fixed",
    "multibalance": "MultiBalance",
    "mgda_ub": "MGDA-UB",
    "mgda": "MGDA-UB",
    "pcgrad": "PCGrad",
    "imtl_g": "IMTL-G",
    "imtl": "IMTL-G",
    "cagrad": "CAGrad",
    "aligned_mtl": "Aligned-MTL",
    "maxnorm": "MaxNorm",
    "max_norm": "MaxNorm",
    "upgrad": "UPGrad",
    "linear": "Linear (fixed)",
    "none": "Plain sum",
    "metabalance_params": "MetaBalance (params)",
    "mgda_params": "MGDA (params)",
}


def _registry_names() -> tuple[str, ...]:
    for attr in ("RULE_NAMES", "RULES", "REGISTRY"):
        names = getattr(_mkr, attr, None)
        if names:
            return tuple(str(n) for n in names)
    fn = getattr(_mkr, "rule_names", None) or getattr(_mkr, "available_rules", None)
    if callable(fn):
        return tuple(str(n) for n in fn())
    return ()


def rule_names() -> tuple[str, ...]:
    """Every rule name :func:`make_rule` accepts, core rules first."""
    names = list(_CORE)
    for n in _registry_names():
        if n not in names:
            names.append(n)
    return tuple(names)


def label(name: str) -> str:
    """Display label of a rule name (``"mgda_ub"`` -> ``"MGDA-UB"``)."""
    return LABELS.get(name, name)


def make_rule(name: str, num_tasks: int, **kwargs: Any) -> Rule:
    """The rule object called ``name`` for ``num_tasks`` tasks, with its hyperparameters."""
    registry = getattr(_mkr, "make_rule", None)
    if callable(registry) and name not in _CORE:
        rule = registry(name, num_tasks, **kwargs)
        if not isinstance(rule, Rule):  # pragma: no cover - registry contract
            raise ValueError(f"mbkernels.rules.make_rule({name!r}) did not return a Rule")
        return rule
    if name not in _CORE:
        allowed = ", ".join(repr(n) for n in rule_names())
        raise ValueError(f"rule must be one of {allowed}, got {name!r}")
    return _CORE[name](num_tasks, **kwargs)


def make_balancer(name: str, num_tasks: int, *, backend: str = "auto", **kwargs: Any) -> Balancer:
    """A :class:`mbkernels.Balancer` running the rule ``name`` (with the full Gram
    matrix, so its stats show the cosines between tasks whatever the rule)."""
    return Balancer(make_rule(name, num_tasks, **kwargs), backend=backend, full_gram=True)
