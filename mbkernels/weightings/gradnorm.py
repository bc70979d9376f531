"""GradNorm (Chen et al., *GradNorm: Gradient Normalization for Adaptive Loss Balancing
in Deep Multitask Networks*, ICML 2018), on the shared representation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..rules.base import State
from ..validation import check_float
from .base import LossStep, LossWeighting


class GradNorm(LossWeighting):
    """Learned weights that equalise the weighted gradient norms, scaled by how far each
    task lags in training.

    Step ``k`` applies the current weights ``w`` (initially 1) and then learns them, as in
    the paper, with the norms taken on the shared representation (the Gram diagonal,
    ``n_t = ||dL_t/dZ||``) instead of the last shared layer's weights:

    * ``G_t = w_t n_t`` (the norm of ``d(w_t L_t)/dZ``), ``Gbar = mean_t G_t``;
    * ``r_t = Ltil_t / mean_k Ltil_k`` with ``Ltil_t = L_t / L_t(0)`` (``L(0)``: the
      losses of the first balancing step);
    * ``L_grad = sum_t |G_t - Gbar r_t^alpha|`` with the target ``Gbar r_t^alpha`` held
      constant, so ``dL_grad/dw_t = sign(G_t - Gbar r_t^alpha) n_t``;
    * a gradient step ``w <- w - lr dL_grad/dw``, clamped at 0, then renormalised to
      ``sum_t w_t = T``.

    The paper trains ``w`` with the network's optimiser; here it is the balancer's own
    plain gradient step (``lr``), so the weights are state, saved in the checkpoint.

    Args:
        num_tasks: number of tasks.
        alpha: the restoring force's strength, ``>= 0`` (paper: 1.5; 0 equalises the
            norms).
        lr: the weights' learning rate, ``> 0`` (the paper uses the network's; 0.025).

    State: ``task_weights`` (the next step's weights), ``initial_losses`` and
    ``started`` (1 once ``L(0)`` is recorded).
    """

    name = "gradnorm"
    loss_state = ("initial_losses",)
    positive_losses = True

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        inf = float("inf")
        self.alpha = check_float("alpha", alpha, low=0.0, high=inf, high_open=True)
        self.lr = check_float("lr", lr, low=0.0, high=inf, low_open=True, high_open=True)

    def init_state(self, device: torch.device | None = None) -> State:
        t = self.num_tasks
        return {
            "task_weights": torch.ones(t, dtype=torch.float64, device=device),
            "initial_losses": torch.ones(t, dtype=torch.float64, device=device),
            "started": torch.zeros((), dtype=torch.int64, device=device),
        }

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        w = state["task_weights"]
        initial = torch.where(state["started"] > 0, state["initial_losses"], losses)
        norms = sq_norms.clamp_min(0).sqrt()
        weighted = w * norms
        inverse_rate = losses / initial
        target = weighted.mean() * (inverse_rate / inverse_rate.mean()) ** self.alpha
        grad = torch.sign(weighted - target) * norms
        stepped = (w - self.lr * grad).clamp_min(0)
        new_state = {
            "task_weights": self.num_tasks * stepped / stepped.sum(),
            "initial_losses": initial,
            "started": torch.ones_like(state["started"]),
        }
        return LossStep(w.clone(), new_state)

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        if bool((state["task_weights"] < 0).any()):
            raise ValueError(
                f"state_dict entry {prefix + 'task_weights'!r} must be >= 0, "
                f"got {state['task_weights'].tolist()}"
            )
        if bool((state["initial_losses"] <= 0).any()):
            raise ValueError(
                f"state_dict entry {prefix + 'initial_losses'!r} must be > 0, "
                f"got {state['initial_losses'].tolist()}"
            )
        if int(state["started"]) not in (0, 1):
            raise ValueError(
                f"state_dict entry {prefix + 'started'!r} must be in [0, 1], "
                f"got {int(state['started'])}"
            )

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "alpha": self.alpha, "lr": self.lr}
