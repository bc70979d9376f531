"""mbkernels: multi-task gradient balancing on the shared representation.

>>> import mbkernels as mbk
>>> bal = mbk.MultiBalance(num_tasks=3, beta=0.9, relax=0.7, reference="target", target=0)
"""

from . import ops, rules, validation, weightings
from .balancer import Balancer, GramReduce
from .checkpoint import check_state_dict, load_state_dict
from .distributed import joint_mean_losses
from .fork import fork, fork_each
from .multibalance import MultiBalance
from .nonfinite import NONFINITE_POLICIES, NonFiniteGradientError, RefusedStepsWarning
from .rules import (
    DBMTL,
    IMTLG,
    MGDAUB,
    RLW,
    RULES,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    Equal,
    FairGrad,
    FixedWeights,
    GradVac,
    MaxNorm,
    MultiBalanceRule,
    NashMTL,
    PCGrad,
    Rule,
    UPGrad,
    make_rule,
)
from .stats import BalanceStats, cosine_from_gram
from .weightings import WEIGHTINGS, LossWeighting

#: The version of the distribution (pyproject.toml reads it from here) and of mbviz.
__version__ = "0.1.0"

__all__ = [
    "DBMTL",
    "IMTLG",
    "MGDAUB",
    "NONFINITE_POLICIES",
    "RLW",
    "RULES",
    "WEIGHTINGS",
    "AlignedMTL",
    "BalanceStats",
    "Balancer",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "Equal",
    "FairGrad",
    "FixedWeights",
    "GradVac",
    "GramReduce",
    "LossWeighting",
    "MaxNorm",
    "MultiBalance",
    "MultiBalanceRule",
    "NashMTL",
    "NonFiniteGradientError",
    "PCGrad",
    "RefusedStepsWarning",
    "Rule",
    "UPGrad",
    "__version__",
    "check_state_dict",
    "cosine_from_gram",
    "fork",
    "fork_each",
    "joint_mean_losses",
    "load_state_dict",
    "make_rule",
    "ops",
    "rules",
    "validation",
    "weightings",
]
