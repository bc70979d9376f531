"""Balancing rules: each maps the Gram matrix of task gradients to task weights.

Every rule returns weights ``w`` (``[T]``) and the balancer applies
``sum_t w_t g_t``; the rules see only the ``[T, T]`` Gram matrix, never the gradients.
"""

from .aligned_mtl import AlignedMTL
from .base import Rule, State
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
from .multibalance import REFERENCES, MultiBalanceRule
from .nash_mtl import NashMTL
from .pcgrad import PCGrad, pcgrad_orders
from .registry import RULES, make_rule
from .rlw import RLW, rlw_normals
from .upgrad import UPGrad

__all__ = [
    "DBMTL",
    "IMTLG",
    "MGDAUB",
    "REFERENCES",
    "RLW",
    "RULES",
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "Equal",
    "FairGrad",
    "FixedWeights",
    "GradVac",
    "MaxNorm",
    "MultiBalanceRule",
    "NashMTL",
    "PCGrad",
    "Rule",
    "State",
    "UPGrad",
    "make_rule",
    "pcgrad_orders",
    "rlw_normals",
]
