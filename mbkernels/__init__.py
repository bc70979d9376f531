"""mbkernels: multi-task gradient balancing on the shared representation.

>>> import mbkernels as mbk
>>> bal = mbk.MultiBalance(num_tasks=3, beta=0.9, relax=0.7, reference="target", target=0)
"""

from . import ops, rules
from .balancer import Balancer, GramReduce
from .checkpoint import check_state_dict, load_state_dict
from .fork import fork
from .multibalance import MultiBalance
from .nonfinite import NONFINITE_POLICIES, NonFiniteGradientError
from .rules import Equal, MultiBalanceRule, Rule
from .stats import BalanceStats, cosine_from_gram

__version__ = "0.1.0"

__all__ = [
    "NONFINITE_POLICIES",
    "BalanceStats",
    "Balancer",
    "Equal",
    "GramReduce",
    "MultiBalance",
    "MultiBalanceRule",
    "NonFiniteGradientError",
    "Rule",
    "__version__",
    "check_state_dict",
    "cosine_from_gram",
    "fork",
    "load_state_dict",
    "ops",
    "rules",
]
