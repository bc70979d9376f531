"""Smooth Tchebycheff scalarisation (Lin et al., *Smooth Tchebycheff Scalarization for
Multi-Objective Optimization*, ICML 2024)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..rules.base import State
from ..rules.linear import check_preferences
from ..validation import check_float, check_int
from .base import LossStep, LossWeighting, check_vector

#: Added inside the logarithms of the nadir-normalised form, as in the authors' code.
LOG_EPS = 1e-20


class STCH(LossWeighting):
    """A smooth approximation of the weighted maximum of the losses.

    Two forms, chosen by ``warmup``:

    * ``warmup=0``: ``F = mu log sum_t exp(p_t (L_t - z_t) / mu)`` (the paper's
      definition, TorchJD's ``STCH``), with preferences ``p`` (default ``1/T`` each)
      and ideal point ``z`` (default 0). Weights ``w_t = p_t softmax(p (L - z) / mu)_t``.
    * ``warmup=K > 0`` (the authors' multi-task code): for the first ``K`` balancing
      steps ``F = sum_t log(L_t + 1e-20)`` (``w_t = 1 / (L_t + 1e-20)``) while the
      losses are averaged into the nadir point ``n``; after them
      ``F = T mu log sum_t exp(u_t / mu)`` with ``u_t = log(L_t / n_t + 1e-20)``, so
      ``w_t = T softmax(u / mu)_t / (n_t (L_t / n_t + 1e-20))``. The authors warm up for
      whole epochs and average the last warm-up epoch's losses; here the warm-up is
      counted in steps and every warm-up step is averaged. The losses must be ``>= 0``
      (a task whose warm-up losses are all 0 has nadir 0, and the steps after the
      warm-up get non-finite weights: refused by the non-finite policy).

    Args:
        num_tasks: number of tasks.
        mu: smoothing, ``> 0``; smaller is closer to the maximum. The paper evaluates
            ``{0.01, 0.1, 0.5, 1}`` without a single best; default 1.
        preferences: ``p`` (``warmup=0`` only), ``T`` numbers ``>= 0``, not all zero.
        reference: ``z`` (``warmup=0`` only), ``T`` finite numbers.
        warmup: balancing steps before the nadir-normalised form, ``>= 0``.

    State: ``loss_sum`` (``[T]``, the warm-up losses summed) and ``count`` (warm-up
    steps taken).
    """

    name = "stch"
    loss_state = ("loss_sum",)

    def __init__(
        self,
        num_tasks: int,
        mu: float = 1.0,
        preferences: Sequence[float] | Tensor | None = None,
        reference: Sequence[float] | Tensor | None = None,
        warmup: int = 0,
    ) -> None:
        super().__init__(num_tasks)
        self.mu = check_float("mu", mu, low=0.0, high=float("inf"), low_open=True, high_open=True)
        self.warmup = check_int("warmup", warmup, low=0)
        if self.warmup > 0 and (preferences is not None or reference is not None):
            raise ValueError(
                "preferences and reference must be None when warmup > 0 (the nadir-normalised "
                f"form has neither), got warmup={warmup}"
            )
        t = self.num_tasks
        if preferences is None:
            self.preferences: tuple[float, ...] = (1.0 / t,) * t
        else:
            self.preferences = check_preferences("preferences", preferences, t)
        self.reference = check_vector("reference", reference, t, 0.0)

    def loss_bounds(self) -> tuple[tuple[float, ...], bool, str]:
        if self.warmup == 0:
            return super().loss_bounds()
        return (
            (0.0,) * self.num_tasks,
            False,
            "with warmup > 0 it takes log(L + 1e-20) and averages the losses into the nadir "
            "point, which divides them",
        )

    def init_state(self, device: torch.device | None = None) -> State:
        return {
            "loss_sum": torch.zeros(self.num_tasks, dtype=torch.float64, device=device),
            "count": torch.zeros((), dtype=torch.int64, device=device),
        }

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        if self.warmup == 0:
            p = losses.new_tensor(self.preferences)
            shifted = p * (losses - losses.new_tensor(self.reference))
            return LossStep(p * torch.softmax(shifted / self.mu, dim=0), dict(state))
        count = state["count"]
        warming = count < self.warmup
        log_weights = 1.0 / (losses + LOG_EPS)
        nadir = state["loss_sum"] / count.clamp_min(1)
        ratio = losses / nadir + LOG_EPS
        soft = torch.softmax(torch.log(ratio) / self.mu, dim=0)
        stch_weights = self.num_tasks * soft / (nadir * ratio)
        new_state = {
            "loss_sum": torch.where(warming, state["loss_sum"] + losses, state["loss_sum"]),
            "count": torch.where(warming, count + 1, count),
        }
        return LossStep(torch.where(warming, log_weights, stch_weights), new_state)

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        count = int(state["count"])
        if not 0 <= count <= self.warmup:
            raise ValueError(
                f"state_dict entry {prefix + 'count'!r} must be in [0, {self.warmup}] "
                f"(warm-up steps taken), got {count}"
            )
        if bool((state["loss_sum"] < 0).any()):
            raise ValueError(
                f"state_dict entry {prefix + 'loss_sum'!r} must be >= 0 (summed losses), "
                f"got {state['loss_sum'].tolist()}"
            )

    def config(self) -> dict[str, Any]:
        if self.warmup > 0:
            return {"num_tasks": self.num_tasks, "mu": self.mu, "warmup": self.warmup}
        return {
            "num_tasks": self.num_tasks,
            "mu": self.mu,
            "preferences": list(self.preferences),
            "reference": list(self.reference),
            "warmup": 0,
        }
