"""Dynamic Weight Average (Liu, Johns & Davison, *End-to-End Multi-Task Learning with
Attention*, CVPR 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..rules.base import State
from ..validation import check_float
from .base import LossStep, LossWeighting


class DWA(LossWeighting):
    """Weights from how fast each task's epoch-average loss fell.

    ``w_t = T softmax(r / temperature)_t`` with ``r_t = Lbar_t(e-1) / Lbar_t(e-2)``, the
    ratio of task ``t``'s average loss over the two previous epochs; ``w = 1`` during
    the first two epochs. ``F = sum_t w_t L_t`` with ``w`` constant within an epoch, as
    in the paper and TorchJD's ``DWA``. Each balancing step adds its observed losses to
    the epoch's sums; :meth:`Balancer.end_epoch <mbkernels.Balancer.end_epoch>` (once
    at the end of each epoch) turns them into the epoch's average.

    Args:
        num_tasks: number of tasks.
        temperature: ``> 0``; larger is more uniform (paper: 2).

    State: ``loss_sum`` (``[T]``, this epoch's summed losses), ``batches`` (steps in
    this epoch), ``history`` (``[T, 2]``, the two previous epochs' averages, newest
    last) and ``epochs`` (finished epochs, counted up to 2).
    """

    name = "dwa"
    loss_state = ("loss_sum",)

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(num_tasks)
        self.temperature = check_float(
            "temperature", temperature, low=0.0, high=float("inf"), low_open=True, high_open=True
        )

    def init_state(self, device: torch.device | None = None) -> State:
        t = self.num_tasks
        return {
            "loss_sum": torch.zeros(t, dtype=torch.float64, device=device),
            "batches": torch.zeros((), dtype=torch.int64, device=device),
            "history": torch.ones(t, 2, dtype=torch.float64, device=device),
            "epochs": torch.zeros((), dtype=torch.int64, device=device),
        }

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        history = state["history"]
        rates = history[:, 1] / history[:, 0]
        ready = self.num_tasks * torch.softmax(rates / self.temperature, dim=0)
        weights = torch.where(state["epochs"] >= 2, ready, torch.ones_like(ready))
        new_state = {
            "loss_sum": state["loss_sum"] + losses,
            "batches": state["batches"] + 1,
            "history": history,
            "epochs": state["epochs"],
        }
        return LossStep(weights, new_state)

    def end_epoch(self, state: Mapping[str, Tensor]) -> State:
        batches = state["batches"]
        any_batch = batches > 0
        average = state["loss_sum"] / batches.clamp_min(1)
        history = state["history"]
        rolled = torch.stack((history[:, 1], average), dim=1)
        return {
            "loss_sum": torch.zeros_like(state["loss_sum"]),
            "batches": torch.zeros_like(batches),
            "history": torch.where(any_batch, rolled, history),
            "epochs": torch.where(any_batch, (state["epochs"] + 1).clamp_max(2), state["epochs"]),
        }

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        if int(state["batches"]) < 0:
            raise ValueError(
                f"state_dict entry {prefix + 'batches'!r} must be in [0, inf), "
                f"got {int(state['batches'])}"
            )
        if not 0 <= int(state["epochs"]) <= 2:
            raise ValueError(
                f"state_dict entry {prefix + 'epochs'!r} must be in [0, 2], "
                f"got {int(state['epochs'])}"
            )
        if bool((state["history"] <= 0).any()) and int(state["epochs"]) >= 2:
            raise ValueError(
                f"state_dict entry {prefix + 'history'!r} must be > 0 (average losses), "
                f"got {state['history'].tolist()}"
            )

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "temperature": self.temperature}
