"""What the experiment runner needs from a multi-task problem."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import MultiTaskModel

#: Task kinds: "binary" (logit output, BCE loss), "regression" (value output, MSE loss) or
#: "count" (log-rate output, Poisson negative log-likelihood).
TASK_KINDS = ("binary", "regression", "count")


@dataclass(frozen=True)
class Batch:
    """A mini-batch: model inputs, targets ``[B, T]`` and a label mask ``[B, T]``.

    ``mask[i, t]`` is False where example ``i`` has no label for task ``t`` (for example
    a sampled unrated movie has no rating); such entries count in no loss or metric.
    """

    inputs: tuple[Tensor, ...]
    targets: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def take(self, idx: Tensor) -> Batch:
        return Batch(tuple(x[idx] for x in self.inputs), self.targets[idx], self.mask[idx])


class MultiTaskProblem(ABC):
    """A multi-task learning problem: data, task kinds, loss scales and a model factory."""

    task_names: tuple[str, ...]
    task_kinds: tuple[str, ...]
    #: Fixed multipliers of the training losses (the magnitude imbalance knob).
    loss_scales: tuple[float, ...]
    #: Model architectures :meth:`make_model` accepts.
    archs: tuple[str, ...] = ("shared_bottom",)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def train_size(self) -> int | None:
        """Rows of a fixed training set (``None``: batches are drawn from a generator, so
        there are no epochs). Problems with a value also implement :meth:`train_batch`."""
        return None

    def train_batch(self, idx: Tensor) -> Batch:
        """The training rows ``idx`` (problems with a fixed training set; see
        :attr:`train_size`). The runner's ``epochs=`` walks a permutation of them."""
        raise NotImplementedError(
            f"{type(self).__name__} has no fixed training set: train it by steps, not epochs"
        )

    @abstractmethod
    def make_model(self, arch: str = "shared_bottom") -> MultiTaskModel:
        """A freshly initialised model (seed torch first for reproducibility)."""

    @abstractmethod
    def sample_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A training mini-batch, drawn with ``generator``."""

    @abstractmethod
    def split(self, name: str) -> Batch:
        """The whole evaluation split ``name`` ("val" or "test")."""

    def task_losses(self, outputs: list[Tensor], batch: Batch) -> list[Tensor]:
        """Per-task training losses: masked mean BCE, MSE or Poisson NLL, times
        :attr:`loss_scales`."""
        losses = []
        for t, (out, kind, scale) in enumerate(zip(outputs, self.task_kinds, self.loss_scales)):
            y, m = batch.targets[:, t], batch.mask[:, t].to(out.dtype)
            if kind == "binary":
                per = F.binary_cross_entropy_with_logits(out, y, reduction="none")
            elif kind == "count":
                per = F.poisson_nll_loss(out, y, log_input=True, full=False, reduction="none")
            else:
                per = (out - y) ** 2
            losses.append(scale * (per * m).sum() / m.sum().clamp_min(1.0))
        return losses
