"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .base import LossStep, LossWeighting


class UW(LossWeighting):
    """Learned log-variances ``s_t``: ``F = sum_t (exp(-s_t) L_t + s_t) / 2``.

    The form TorchJD's ``UW`` uses (Kendall et al.'s regression likelihood
    ``L_t / (2 sigma_t^2) + log sigma_t`` with ``s_t = log sigma_t^2``). Weights
    ``w_t = exp(-s_t) / 2``; ``s`` is the balancer's ``nn.Parameter`` ``log_var``
    (initial 0). Its gradient ``dF/ds_t = (1 - exp(-s_t) L_t) / 2`` comes from autograd
    through the zero-valued term :meth:`Balancer.observe <mbkernels.Balancer.observe>`
    returns, added to the loss that is back-propagated.
    """

    name = "uw"

    def init_parameters(self, device: torch.device | None = None) -> dict[str, Tensor]:
        return {"log_var": torch.zeros(self.num_tasks, dtype=torch.float64, device=device)}

    def parameter_term(self, losses: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        s = params["log_var"]
        return 0.5 * (torch.exp(-s) * losses + s).sum()

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        precision = torch.exp(-params["log_var"])
        return LossStep(0.5 * precision, {})
