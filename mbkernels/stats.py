"""What a balancer saw on its latest step, as detached device tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BalanceStats:
    """Statistics of one balancing step.

    All fields are detached tensors on the gradients' device, so reading the
    object costs nothing; converting a field to Python (``.item()``,
    ``.tolist()``) is what synchronises with the device.

    Attributes:
        gram: ``[T, T]`` Gram matrix ``G_ij = <g_i, g_j>`` of the per-task
            gradients on the shared representation (float64; after the
            all-reduce and the loss-scale correction, as the rule saw it). Off
            the diagonal NaN when it was not computed: a rule that reads only
            the norms, without ``full_gram=True`` (see :class:`Balancer`).
        norms: ``[T]`` gradient norms ``||g_t||`` (the square root of the diagonal).
        weights: ``[T]`` weights applied on this step (float64).
        state: the rule's state after the step (for MultiBalance, ``{"ema": [T]}``).
        step: number of balancing steps taken so far (0-d int64 tensor).
        finite: 0-d bool tensor, ``False`` if this step's statistics were non-finite.
        refused_streak: 0-d int64 tensor, the number of steps refused in a row up to
            and including this one (0 when this step was taken in full; a step that
            dropped a task under ``nonfinite="skip_task"`` counts as refused).
    """

    gram: Tensor
    norms: Tensor
    weights: Tensor
    state: dict[str, Tensor]
    step: Tensor
    finite: Tensor
    refused_streak: Tensor

    @property
    def cosine(self) -> Tensor:
        """``[T, T]`` cosine similarities; 0 where a gradient is zero, NaN off the
        diagonal when the inner products were not computed (``full_gram=False``)."""
        return cosine_from_gram(self.gram)

    @property
    def ema(self) -> Tensor | None:
        """The EMA of gradient magnitudes, for rules that keep one."""
        return self.state.get("ema")

    def as_dict(self) -> dict[str, list[float] | list[list[float]] | float | int | bool]:
        """Plain Python values (this synchronises with the device)."""
        out: dict[str, list[float] | list[list[float]] | float | int | bool] = {
            "norms": self.norms.tolist(),
            "weights": self.weights.tolist(),
            "cosine": self.cosine.tolist(),
            "step": int(self.step.item()),
            "finite": bool(self.finite.item()),
            "refused_streak": int(self.refused_streak.item()),
        }
        for name, value in self.state.items():
            out[name] = value.tolist()
        return out


def cosine_from_gram(gram: Tensor) -> Tensor:
    """Cosine similarity matrix from a Gram matrix, with 0 for zero-norm rows."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    denom = norms[:, None] * norms[None, :]
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, gram / safe, torch.zeros_like(gram)).clamp(-1.0, 1.0)
