"""FAMO, Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..rules.base import State
from ..validation import check_float
from .base import LossStep, LossWeighting, check_vector

#: Added to the shifted losses before their logarithm (the authors' and TorchJD's 1e-8).
EPS = 1e-8
#: Adam's defaults, as the authors' and TorchJD's FAMO use them.
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class FAMO(LossWeighting):
    """Weights that make every task's log-loss fall at the same rate.

    With ``s_t = L_t - b_t + 1e-8`` and ``z = softmax(xi)`` of learned logits ``xi``:
    ``F = c sum_t z_t log s_t``, ``c = 1 / sum_t (z_t / s_t)`` held constant, so
    ``w_t = (z_t / s_t) / sum_k (z_k / s_k)`` (weights summing to 1), as in the paper and
    TorchJD's ``FAMO``.

    The logits learn after the optimiser step: :meth:`Balancer.update
    <mbkernels.Balancer.update>` with the losses recomputed on the same batch takes
    ``delta_t = log s_t(before) - log s_t(after)``, the gradient ``J_softmax(xi)^T delta``
    and one Adam step on ``xi`` (``lr``, ``weight_decay`` added to the gradient, betas
    ``(0.9, 0.999)``, eps ``1e-8``: ``torch.optim.Adam``'s step, with its moments kept in
    the balancer state so a checkpoint resumes it exactly).

    Args:
        num_tasks: number of tasks.
        lr: the logits' Adam learning rate, ``>= 0`` (paper: 0.025).
        weight_decay: ``>= 0`` (paper's Algorithm 2 and LibMTL: 1e-3).
        min_losses: the lower bounds ``b`` (default 0); every loss must stay above its bound.

    State: ``logits``, Adam's ``exp_avg``, ``exp_avg_sq`` and ``adam_step``, and
    ``prev_losses`` with ``pending`` (1 between a balancing step and its update).
    """

    name = "famo"
    loss_state = ("prev_losses",)

    def __init__(
        self,
        num_tasks: int,
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        min_losses: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__(num_tasks)
        inf = float("inf")
        self.lr = check_float("lr", lr, low=0.0, high=inf, high_open=True)
        self.weight_decay = check_float(
            "weight_decay", weight_decay, low=0.0, high=inf, high_open=True
        )
        self.min_losses = check_vector("min_losses", min_losses, self.num_tasks, 0.0)

    def init_state(self, device: torch.device | None = None) -> State:
        t = self.num_tasks

        def zeros() -> Tensor:
            return torch.zeros(t, dtype=torch.float64, device=device)

        return {
            "logits": zeros(),
            "exp_avg": zeros(),
            "exp_avg_sq": zeros(),
            "adam_step": torch.zeros((), dtype=torch.int64, device=device),
            "prev_losses": zeros(),
            "pending": torch.zeros((), dtype=torch.int64, device=device),
        }

    def loss_bounds(self) -> tuple[tuple[float, ...], bool, str]:
        low = tuple(b - EPS for b in self.min_losses)
        return low, True, "it takes log(L - min_losses + 1e-8)"

    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        z = torch.softmax(state["logits"], dim=0)
        ratio = z / (losses - losses.new_tensor(self.min_losses) + EPS)
        new_state = {
            **state,
            "prev_losses": losses.clone(),
            "pending": torch.ones_like(state["pending"]),
        }
        return LossStep(ratio / ratio.sum(), new_state)

    def after_step(self, losses: Tensor, state: Mapping[str, Tensor]) -> State:
        if int(state["pending"]) != 1:
            raise ValueError(
                "bal.update(losses) for rule 'famo' must follow a balancing step (observe, "
                "backward, optimiser step, then update once with the recomputed losses); "
                "there was none since the last update"
            )
        bounds = losses.new_tensor(self.min_losses)
        delta = torch.log(state["prev_losses"] - bounds + EPS) - torch.log(losses - bounds + EPS)
        logits = state["logits"]
        z = torch.softmax(logits, dim=0)
        grad = z * (delta - (z * delta).sum()) + self.weight_decay * logits
        beta1, beta2 = BETAS
        adam_step = state["adam_step"] + 1
        exp_avg = state["exp_avg"].lerp(grad, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
        t = adam_step.to(torch.float64)
        correction1 = 1 - beta1**t
        correction2 = 1 - beta2**t
        denom = exp_avg_sq.sqrt() / correction2.sqrt() + ADAM_EPS
        return {
            "logits": logits - (self.lr / correction1) * exp_avg / denom,
            "exp_avg": exp_avg,
            "exp_avg_sq": exp_avg_sq,
            "adam_step": adam_step,
            "prev_losses": state["prev_losses"],
            "pending": torch.zeros_like(state["pending"]),
        }

    def after_refused_step(self, state: Mapping[str, Tensor]) -> State:
        return {**state, "pending": torch.zeros_like(state["pending"])}

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        for name, low, high in (("adam_step", 0, None), ("pending", 0, 1)):
            value = int(state[name])
            if value < low or (high is not None and value > high):
                bound = "inf)" if high is None else f"{high}]"
                raise ValueError(
                    f"state_dict entry {prefix + name!r} must be in [{low}, {bound}, got {value}"
                )
        if bool((state["exp_avg_sq"] < 0).any()):
            raise ValueError(
                f"state_dict entry {prefix + 'exp_avg_sq'!r} must be >= 0, "
                f"got {state['exp_avg_sq'].tolist()}"
            )
        if int(state["pending"]) == 1:
            floor = torch.tensor(self.min_losses, dtype=torch.float64) - EPS
            prev = state["prev_losses"].detach().cpu().to(torch.float64)
            if bool((prev <= floor).any()):
                raise ValueError(
                    f"state_dict entry {prefix + 'prev_losses'!r} must be > min_losses - 1e-8 "
                    f"= {floor.tolist()} while a step is pending (they are the losses of that "
                    f"step), got {prev.tolist()}"
                )

    def config(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "min_losses": list(self.min_losses),
        }
