"""GLS, the geometric loss strategy (Chennupati et al., *MultiNet++*, CVPR Workshops 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from .geometric_mean import GeometricMean


class GLS(GeometricMean):
    """``F = (prod_t L_t)^(1/T)``, the paper's form of the geometric mean.

    The same objective and weights ``w_t = F / (T L_t)`` as
    :class:`~mbkernels.weightings.GeometricMean`, with ``F`` computed as the product,
    as in the paper and LibMTL. In float64 the product must stay within float64's range
    (``0 < prod_t L_t < inf``); a step where it under- or overflows gets NaN weights and
    is refused (the non-finite policy), where ``GeometricMean`` still has an answer.
    """

    name = "gls"

    def objective(self, losses: Tensor) -> Tensor:
        product = torch.prod(losses)
        in_range = (product > 0) & torch.isfinite(product)
        value = torch.pow(product, 1.0 / self.num_tasks)
        return torch.where(in_range, value, torch.full_like(value, float("nan")))
