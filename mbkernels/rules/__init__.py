"""Balancing rules: each maps the Gram matrix of task gradients to task weights."""

from .base import Rule, State
from .equal import Equal
from .multibalance import REFERENCES, MultiBalanceRule

__all__ = ["REFERENCES", "Equal", "MultiBalanceRule", "Rule", "State"]
