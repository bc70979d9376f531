"""Loss-aware weightings: rules whose weights depend on this step's task losses.

They run through the same fork and passes as every rule; the balancer needs the losses
first: ``bal.observe(losses)`` before ``backward`` (see :class:`LossWeighting` and
docs/rules.md, "Loss-aware weightings").
"""

from .base import LossStep, LossWeighting
from .dwa import DWA
from .famo import FAMO
from .geometric_mean import GeometricMean
from .gls import GLS
from .gradnorm import GradNorm
from .imtl_l import IMTLL
from .log import LogLosses
from .registry import WEIGHTINGS
from .stch import STCH
from .uw import UW

__all__ = [
    "DWA",
    "FAMO",
    "GLS",
    "IMTLL",
    "STCH",
    "UW",
    "WEIGHTINGS",
    "GeometricMean",
    "GradNorm",
    "LogLosses",
    "LossStep",
    "LossWeighting",
]
