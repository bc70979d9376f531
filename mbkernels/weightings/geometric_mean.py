"""The geometric mean of the losses (TorchJD's ``GeometricMean``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .base import LossStep, LossWeighting


class GeometricMean(LossWeighting):
    """``F = exp(mean_t log L_t)``, the geometric mean of the losses.

    Weights ``w_t = dF/dL_t = F / (T L_t)``: a task's gradient counts in proportion to
    the inverse of its loss, so every task's *relative* decrease counts alike. The
    losses must be ``> 0``. Computed through the logarithms, which neither overflow nor
    underflow for any float64 losses (:class:`~mbkernels.weightings.GLS` is the same
    objective written as the paper's product).
    """

    name = "geometric_mean"
    positive_losses = True

    def objective(self, losses: Tensor) -> Tensor:
        """``F`` at ``losses`` (float64 ``[T]``)."""
        return torch.exp(torch.log(losses).mean())

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        return LossStep(self.objective(losses) / (self.num_tasks * losses), {})
