"""Equal weighting: the plain sum of the task losses (the baseline)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Rule, State


class Equal(Rule):
    """``w_t = 1`` for every task: the gradient of ``sum_t L_t``, unchanged."""

    name = "equal"
    uses_cross_terms = False  # fixed weights: reads nothing of the Gram matrix

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return torch.ones(self.num_tasks, dtype=gram.dtype, device=gram.device), {}

    def host_weights(
        self, sq_norms: list[float], state: Mapping[str, list[Any]], step: int
    ) -> tuple[list[float], dict[str, list[Any]]]:
        return [1.0] * self.num_tasks, {}
