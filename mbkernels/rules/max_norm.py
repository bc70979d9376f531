"""A DB-MTL-style magnitude rule: every task's gradient rescaled to the largest magnitude.

DB-MTL (Lin et al., "Dual-Balancing Multi-Task Learning", arXiv 2308.12029) combines
``max_k ||gbar_k|| * sum_t gbar_t / ||gbar_t||`` where ``gbar_t`` is a moving average of
task t's gradient. A Gram-only rule cannot average the gradients themselves, so this
rule keeps the moving average on the *magnitudes* and the direction from this step::

    m_t <- beta * m_t + (1 - beta) * n_t          n_t = ||g_t|| = sqrt(G_tt)
    w_t = max_k mhat_k / (n_t + eps)             mhat_k = m_k / (1 - beta**c_k)

with ``c_k`` the number of updates of task k's EMA (state ``count``: the step number,
except for a task held under ``nonfinite="skip_task"``, which keeps its EMA and count),
so the combined gradient is the sum of the unit task directions scaled to the largest
(smoothed) magnitude. ``beta = 0`` is the memoryless version. A task with a zero
gradient gets weight 1 (its gradient is zero, so the weight only has to be finite).
DB-MTL's loss-scale half (training on ``log L_t``) is a change of the losses, not of the
gradient combination; apply it in the model if wanted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float
from .base import Rule, State, check_magnitude_ema


class MaxNorm(Rule):
    """Unit task directions scaled to the largest EMA magnitude (see module docstring).

    Args:
        num_tasks: number of tasks.
        beta: EMA decay of the magnitudes in [0, 1).
        eps: added to each norm in the denominator, in (0, 1].
    """

    name = "max_norm"
    uses_cross_terms = False  # reads only the norms (the Gram diagonal)

    def __init__(self, num_tasks: int, *, beta: float = 0.9, eps: float = 1e-8) -> None:
        super().__init__(num_tasks)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, high_open=True)
        self.eps = check_float("eps", eps, low=0.0, high=1.0, low_open=True)

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

    def _weights(
        self, gram: Tensor, state: Mapping[str, Tensor], active: Tensor | None
    ) -> tuple[Tensor, State]:
        norms = gram.diagonal().to(torch.float64).clamp_min(0).sqrt()
        old = state["ema"].to(torch.float64)
        ema = self.beta * old + (1.0 - self.beta) * norms
        count = state["count"] + 1
        corrected = count
        if active is not None:
            ema = torch.where(active, ema, old)
            count = torch.where(active, count, state["count"])
            corrected = count.clamp_min(1)  # never updated: EMA 0, any count keeps it 0
        scale = (ema / (1.0 - self.beta ** corrected.to(ema.dtype))).max()
        w = torch.where(norms > 0, scale / (norms + self.eps), torch.ones_like(norms))
        if active is not None:
            w = torch.where(active, w, torch.zeros_like(w))
        return w.to(gram.dtype), {"ema": ema.to(state["ema"].dtype), "count": count}

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        """The EMA of gradient magnitudes and the update counts are ``>= 0``."""
        check_magnitude_ema(state, prefix)

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "beta": self.beta, "eps": self.eps}
