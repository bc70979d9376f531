"""A problem whose training losses are multiplied by fixed per-task factors.

:class:`ScaledLossProblem` wraps any :class:`~mbviz.problems.MultiTaskProblem` and
multiplies the losses its :meth:`~mbviz.problems.MultiTaskProblem.task_losses` returns,
after whatever the wrapped problem does (its own ``loss_scales`` included). Data, model,
splits and therefore every evaluation metric stay those of the wrapped problem: scaling a
loss changes what training sees, not what a task is.

This is the knob of the imbalance question (:func:`mbviz.study.imbalance`): with the plain
sum of losses a task whose loss is 1000 times larger owns the shared layers; a balancing
rule that normalises gradient magnitudes should not care. ::

    from mbviz.problems import MovieLensProblem, scale_task_loss

    p = scale_task_loss(MovieLensProblem(), "rating", 1e3)   # rating loss x 1000
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mbkernels.validation import check_float

from ..models import MultiTaskModel
from .base import Batch, MultiTaskProblem


class ScaledLossProblem(MultiTaskProblem):
    """``problem`` with its training losses multiplied by ``scales`` (one factor per task).

    Args:
        problem: the problem to wrap (it is not changed; wrappers may be nested).
        scales: ``num_tasks`` finite factors in ``[0, 1e9]``.

    :attr:`loss_scales` reports the combined factors (the wrapped problem's times
    ``scales``); :attr:`factors` the ones this wrapper adds.
    """

    def __init__(self, problem: MultiTaskProblem, scales: Sequence[float]) -> None:
        scales = tuple(scales)
        if len(scales) != problem.num_tasks:
            raise ValueError(
                f"scales must have num_tasks={problem.num_tasks} entries, got {len(scales)}"
            )
        self.factors = tuple(
            check_float(f"scales[{i}]", s, low=0.0, high=1e9) for i, s in enumerate(scales)
        )
        self.problem = problem
        self.task_names = problem.task_names
        self.task_kinds = problem.task_kinds
        self.archs = problem.archs
        self.loss_scales = tuple(
            float(a) * b for a, b in zip(problem.loss_scales, self.factors, strict=True)
        )

    @property
    def num_tasks(self) -> int:
        return self.problem.num_tasks

    @property
    def train_size(self) -> int | None:
        return self.problem.train_size

    def train_batch(self, idx: Tensor) -> Batch:
        return self.problem.train_batch(idx)

    def make_model(self, arch: str | None = None) -> MultiTaskModel:
        """The wrapped problem's model (``None``: its default architecture)."""
        return self.problem.make_model() if arch is None else self.problem.make_model(arch)

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        return self.problem.sample_batch(batch_size, generator)

    def split(self, name: str) -> Batch:
        return self.problem.split(name)

    def task_losses(self, outputs: list[Tensor], batch: Batch) -> list[Tensor]:
        """The wrapped problem's losses, each times its factor."""
        losses = self.problem.task_losses(outputs, batch)
        return [f * loss for f, loss in zip(self.factors, losses, strict=True)]

    def __repr__(self) -> str:
        return f"ScaledLossProblem({self.problem!r}, scales={self.factors})"


def task_index(problem: MultiTaskProblem, task: int | str) -> int:
    """Index of ``task`` (a task name or an index) in ``problem.task_names``."""
    if isinstance(task, str):
        if task not in problem.task_names:
            raise ValueError(f"task must be one of {list(problem.task_names)}, got {task!r}")
        return problem.task_names.index(task)
    if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < problem.num_tasks:
        raise ValueError(
            f"task must be a task name or an index in [0, {problem.num_tasks - 1}], got {task!r}"
        )
    return task


def scale_task_loss(problem: MultiTaskProblem, task: int | str, factor: float) -> ScaledLossProblem:
    """``problem`` with the training loss of one ``task`` (name or index) times ``factor``."""
    t = task_index(problem, task)
    scales = [1.0] * problem.num_tasks
    scales[t] = check_float("factor", factor, low=0.0, high=1e9)
    return ScaledLossProblem(problem, scales)
