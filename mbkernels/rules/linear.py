"""Fixed preference weights (linear scalarisation): ``w_t = p_t`` on every step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Rule, State


class FixedWeights(Rule):
    """Linear scalarisation ``sum_t p_t L_t`` with constant preferences ``p``.

    Args:
        num_tasks: number of tasks.
        preferences: ``num_tasks`` finite numbers ``>= 0``, not all zero. Sweeping them
            traces the (convex part of the) Pareto front.
    """

    name = "linear"
    uses_cross_terms = False  # fixed weights: reads nothing of the Gram matrix

    def __init__(self, num_tasks: int, preferences: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(num_tasks)
        self.preferences = check_preferences("preferences", preferences, self.num_tasks)

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return torch.tensor(self.preferences, dtype=gram.dtype, device=gram.device), {}

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "preferences": list(self.preferences)}


def check_preferences(
    name: str, value: Sequence[float] | Tensor | None, num_tasks: int
) -> tuple[float, ...]:
    """``num_tasks`` finite non-negative numbers, not all zero (``None``: all ones)."""
    if value is None:
        return (1.0,) * num_tasks
    if isinstance(value, Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    try:
        prefs = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of {num_tasks} numbers >= 0, got {value!r}"
        ) from None
    if len(prefs) != num_tasks:
        raise ValueError(f"{name} must have num_tasks={num_tasks} entries, got {len(prefs)}")
    if not all(math.isfinite(p) and p >= 0 for p in prefs) or sum(prefs) <= 0:
        raise ValueError(
            f"{name} must be finite numbers in [0, inf), not all zero, got {list(prefs)}"
        )
    return prefs
