"""Every rule by name: ``RULES["pcgrad"]`` and ``make_rule("pcgrad", num_tasks, seed=1)``."""

from __future__ import annotations

from typing import Any

from .aligned_mtl import AlignedMTL
from .base import Rule
from .cagrad import CAGrad
from .config import ConFIG
from .db_mtl import DBMTL
from .dualproj import DualProj
from .equal import Equal
from .fairgrad import FairGrad
from .gradvac import GradVac
from .imtl_g import IMTLG
from .linear import FixedWeights
from .max_norm import MaxNorm
from .mgda import MGDAUB
from .multibalance import MultiBalanceRule
from .nash_mtl import NashMTL
from .pcgrad import PCGrad
from .rlw import RLW
from .upgrad import UPGrad

RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (
        Equal,
        FixedWeights,
        MultiBalanceRule,
        MaxNorm,
        MGDAUB,
        PCGrad,
        IMTLG,
        CAGrad,
        AlignedMTL,
        UPGrad,
        DualProj,
        ConFIG,
        RLW,
        NashMTL,
        FairGrad,
        GradVac,
        DBMTL,
    )
}


def make_rule(name: str, num_tasks: int, **hyperparameters: Any) -> Rule:
    """Build the rule registered as ``name``: a key of :data:`RULES` or of
    :data:`mbkernels.weightings.WEIGHTINGS` (the loss-aware weightings)."""
    from ..weightings.registry import WEIGHTINGS  # the weightings build on this package

    if name in RULES:
        return RULES[name](num_tasks, **hyperparameters)
    if name in WEIGHTINGS:
        return WEIGHTINGS[name](num_tasks, **hyperparameters)
    allowed = ", ".join(repr(k) for k in (*RULES, *WEIGHTINGS))
    raise ValueError(f"rule must be one of {allowed}, got {name!r}")
