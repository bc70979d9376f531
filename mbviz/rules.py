"""Balancing rules by name, for the runner, the figures and the widgets.

The rules and their registry live in :mod:`mbkernels.rules` (``RULES``,
``make_rule``); every rule registered there is available here. This module adds a
display label per name, and :func:`make_balancer`, which builds a balancer that
records the whole Gram matrix.
"""

from __future__ import annotations

from typing import Any

from mbkernels import Balancer
from mbkernels.rules import RULES, Rule
from mbkernels.rules import make_rule as make_rule

#: A readable label for each rule name, for legends; also the runner's two other
#: methods: ``"none"`` (no balancer) and the parameter-level methods.
LABELS: dict[str, str] = {
    "equal": "Equal",
    "linear": "Linear (fixed)",
    "multibalance": "MultiBalance",
    "max_norm": "MaxNorm",
    "mgda_ub": "MGDA-UB",
    "pcgrad": "PCGrad",
    "imtl_g": "IMTL-G",
    "cagrad": "CAGrad",
    "aligned_mtl": "Aligned-MTL",
    "upgrad": "UPGrad",
    "dualproj": "DualProj",
    "config": "ConFIG",
    "rlw": "RLW (random)",
    "nash_mtl": "Nash-MTL",
    "fairgrad": "FairGrad",
    "gradvac": "GradVac",
    "db_mtl": "DB-MTL",
    "none": "Plain sum",
    "metabalance_params": "MetaBalance (params)",
    "mgda_params": "MGDA (params)",
}


def rule_names() -> tuple[str, ...]:
    """Every rule name :func:`make_rule` accepts, in the registry's order."""
    return tuple(RULES)


def label(name: str) -> str:
    """Display label of a rule name (``"mgda_ub"`` -> ``"MGDA-UB"``)."""
    return LABELS.get(name, name)


def make_balancer(name: str, num_tasks: int, *, backend: str = "auto", **kwargs: Any) -> Balancer:
    """A :class:`mbkernels.Balancer` running the rule ``name`` (with the full Gram
    matrix, so its stats show the cosines between tasks whatever the rule)."""
    rule: Rule = make_rule(name, num_tasks, **kwargs)
    return Balancer(rule, backend=backend, full_gram=True)
