"""The log transform of the losses: DB-MTL's loss-scale balancing (Lin et al., 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..validation import check_float
from .base import LossStep, LossWeighting


class LogLosses(LossWeighting):
    """``F = sum_t log(L_t + eps)``: every task's loss on a log scale, so a task's
    gradient counts relative to its own loss. Weights ``w_t = 1 / (L_t + eps)``.

    The loss half of DB-MTL (whose gradient half balances the magnitudes; a Gram rule).

    Args:
        num_tasks: number of tasks.
        eps: added to each loss before the logarithm, ``>= 0`` (DB-MTL: ``1e-8``). The
            losses must be ``> -eps``.
    """

    name = "log"

    def __init__(self, num_tasks: int, eps: float = 1e-8) -> None:
        super().__init__(num_tasks)
        self.eps = check_float("eps", eps, low=0.0, high=float("inf"), high_open=True)

    def loss_bounds(self) -> tuple[tuple[float, ...], bool, str]:
        return (-self.eps,) * self.num_tasks, True, "it takes log(L + eps)"

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        return LossStep(1.0 / (losses + self.eps), {})

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "eps": self.eps}
