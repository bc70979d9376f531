"""DB-MTL's gradient balancing: every task scaled to the largest smoothed magnitude.

Lin et al., "Dual-Balancing Multi-Task Learning", arXiv 2308.12029. DB-MTL has two
halves. The *loss* half trains on ``log L_t`` instead of ``L_t`` (a change of the losses,
which belongs to the loss-aware API, not to a Gram-matrix rule). The *gradient* half
keeps an EMA of every task's gradient (on the shared parameters) and combines::

    gbar_t <- beta_k gbar_t + (1 - beta_k) g_t,     beta_k = beta / k^sigma
    d = sum_t (max_i ||gbar_i|| / ||gbar_t||) gbar_t

On the representation the gradients of different steps belong to different mini-batches
(different rows of ``Z``), so an EMA of the gradient vectors has no meaning there. This
rule keeps the EMA on the magnitudes instead and applies the smoothed ratio to this
step's gradient::

    m_t <- beta_k m_t + (1 - beta_k) n_t            n_t = ||g_t|| = sqrt(G_tt)
    w_t = max_i mhat_i / mhat_t                      mhat_t = m_t / (1 - prod_k beta_k)

so ``w_t g_t`` has norm ``max_i mhat_i * n_t / mhat_t``: the largest smoothed magnitude,
times this step's deviation of task t from its own average. (:class:`MaxNorm` is the
other reading, ``w_t = max_i mhat_i / n_t``: unit directions of this step, no smoothing
of the ratio.) The bias correction ``1 - prod_{k <= c_t} beta_k`` (``c_t`` = task t's
update count, state ``count``) divides every ``m_t`` by the same factor while all tasks
are updated together, so it changes the weights only for a task held under
``nonfinite="skip_task"``. A task whose EMA is exactly 0 (no gradient yet) gets weight 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float
from .base import Rule, State, check_magnitude_ema


class DBMTL(Rule):
    """DB-MTL's gradient half on the representation (see module docstring).

    Args:
        num_tasks: number of tasks.
        beta: EMA decay in [0, 1) (LibMTL's default 0.9).
        sigma: decay exponent of the EMA rate, ``beta_k = beta / k^sigma``, in [0, 10]
            (LibMTL's default 0: a constant ``beta``).
    """

    name = "db_mtl"
    uses_cross_terms = False  # reads only the norms (the Gram diagonal)

    def __init__(self, num_tasks: int, *, beta: float = 0.9, sigma: float = 0.0) -> None:
        super().__init__(num_tasks)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, high_open=True)
        self.sigma = check_float("sigma", sigma, low=0.0, high=10.0)

    def init_state(self, device: torch.device | None = None) -> State:
        return {
            "ema": torch.zeros(self.num_tasks, dtype=torch.float32, device=device),
            "count": torch.zeros(self.num_tasks, dtype=torch.int64, device=device),
        }

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return self._weights(gram, state, None)

    def weights_subset(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor
    ) -> tuple[Tensor, State]:
        """Inactive tasks hold their EMA and update count and get weight 0; their held
        magnitude, bias-corrected for their own updates, still counts towards the max."""
        return self._weights(gram, state, active)

    def _log_beta_product(self, count: Tensor) -> Tensor:
        """``log prod_{k=1..c} beta / k^sigma = c log beta - sigma log(c!)`` (float64)."""
        c = count.to(torch.float64)
        return c * math.log(self.beta) - self.sigma * torch.lgamma(c + 1.0)

    def _weights(
        self, gram: Tensor, state: Mapping[str, Tensor], active: Tensor | None
    ) -> tuple[Tensor, State]:
        norms = gram.diagonal().to(torch.float64).clamp_min(0).sqrt()
        old = state["ema"].to(torch.float64)
        count = state["count"] + 1
        rate = self.beta / count.to(torch.float64) ** self.sigma
        ema = rate * old + (1.0 - rate) * norms
        if active is not None:
            ema = torch.where(active, ema, old)
            count = torch.where(active, count, state["count"])
        if self.beta > 0.0:
            corrected = count.clamp_min(1)  # never updated: EMA 0, any count keeps it 0
            mhat = ema / (1.0 - self._log_beta_product(corrected).exp())
        else:
            mhat = ema
        top = mhat.max()
        w = torch.where(mhat > 0, top / torch.where(mhat > 0, mhat, 1.0), 1.0)
        if active is not None:
            w = torch.where(active, w, torch.zeros_like(w))
        return w.to(gram.dtype), {"ema": ema.to(state["ema"].dtype), "count": count}

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        """The EMA of gradient magnitudes and the update counts are ``>= 0``."""
        check_magnitude_ema(state, prefix)

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "beta": self.beta, "sigma": self.sigma}
