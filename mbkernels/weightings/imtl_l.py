"""IMTL-L, the loss half of Impartial Multi-Task Learning (Liu et al., ICLR 2021)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .base import LossStep, LossWeighting


class IMTLL(LossWeighting):
    """Learned log-scales ``s_t``: ``F = sum_t (exp(s_t) L_t - s_t)``.

    As in the paper and TorchJD's ``IMTLL``: weights ``w_t = exp(s_t)``; ``s`` is the
    balancer's ``nn.Parameter`` ``log_scale`` (initial 0). Its gradient
    ``dF/ds_t = exp(s_t) L_t - 1`` comes from autograd through the zero-valued term
    :meth:`Balancer.observe <mbkernels.Balancer.observe>` returns, added to the loss that
    is back-propagated. At its minimum over ``s``, ``exp(s_t) L_t = 1``: every scaled
    loss is 1.
    """

    name = "imtl_l"

    def init_parameters(self, device: torch.device | None = None) -> dict[str, Tensor]:
        return {"log_scale": torch.zeros(self.num_tasks, dtype=torch.float64, device=device)}

    def parameter_term(self, losses: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        s = params["log_scale"]
        return (torch.exp(s) * losses - s).sum()

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        return LossStep(torch.exp(params["log_scale"]), {})
