"""Every loss-aware weighting by name: ``WEIGHTINGS["uw"]``; :func:`mbkernels.make_rule`
builds them too (``make_rule("famo", 3, lr=0.01)``)."""

from __future__ import annotations

from .base import LossWeighting
from .dwa import DWA
from .famo import FAMO
from .geometric_mean import GeometricMean
from .gls import GLS
from .gradnorm import GradNorm
from .imtl_l import IMTLL
from .log import LogLosses
from .stch import STCH
from .uw import UW

WEIGHTINGS: dict[str, type[LossWeighting]] = {
    cls.name: cls for cls in (UW, DWA, GLS, GeometricMean, STCH, IMTLL, FAMO, GradNorm, LogLosses)
}
