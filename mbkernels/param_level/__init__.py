"""Parameter-level baselines: one backward per task over the shared parameters."""

from .base import ParamBalancer, ParamBalanceStats
from .metabalance import MetaBalanceParams
from .mgda import MGDAParams
from .rule import RuleParams

__all__ = ["MGDAParams", "MetaBalanceParams", "ParamBalanceStats", "ParamBalancer", "RuleParams"]
