"""What the balancer does when a task's gradient is not finite (inf or NaN).

Three policies, chosen with ``Balancer(..., nonfinite=...)``:

``"skip_update"`` (default)
    The balancer's state (rule state such as the EMA, ``step``, ``weights``) is
    left untouched, and the gradient is combined with the *last finite*
    weights. The non-finite values flow on into the bottom exactly as they
    would in plain training, so a ``torch.amp.GradScaler`` (or any other
    overflow guard) sees them and skips the optimizer step: the balancer skips
    the same step. Nothing is silently repaired.

``"skip_task"``
    Offending tasks are dropped from this step: weight 0, their gradient is
    not added, their per-task state is held; the other tasks are balanced
    among themselves (:meth:`mbkernels.rules.Rule.weights_subset`). If every
    task is non-finite this falls back to ``"skip_update"``.

``"raise"``
    Raise :class:`NonFiniteGradientError` (a ``FloatingPointError``) naming
    the task indices, before any state is changed.

With an enabled ``torch.amp.GradScaler`` passed as ``grad_scaler=``, every
non-finite step is handled as ``"skip_update"`` whatever the policy: an overflow
is the scaler's to handle (:mod:`mbkernels.amp`).

A task is *non-finite* when the diagonal entry of the (global) Gram matrix is
inf or NaN, i.e. its gradient has an inf or NaN element (the Gram matrix is
computed with enough range that finite gradients never overflow it; see
:mod:`mbkernels.numerics`). In multi-process training the decision is taken on
the all-reduced Gram matrix, so every rank takes the same one.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

NonFinitePolicy = Literal["skip_update", "skip_task", "raise"]
NONFINITE_POLICIES: tuple[str, ...] = ("skip_update", "skip_task", "raise")


class NonFiniteGradientError(FloatingPointError):
    """A task gradient contained inf or NaN under ``nonfinite="raise"``.

    Attributes:
        tasks: indices of the offending tasks.
    """

    def __init__(self, tasks: list[int]) -> None:
        self.tasks = tasks
        super().__init__(
            f"non-finite (inf or NaN) gradient on the shared representation for task "
            f"index(es) {tasks}; the balancer state was not changed. Use "
            f"nonfinite='skip_update' or 'skip_task' to continue past such steps"
        )


class RefusedStepsWarning(RuntimeWarning):
    """Many balancing steps in a row were refused (``Balancer(warn_after_refused=...)``).

    Each refusal is correct on its own (non-finite statistics must not enter the state),
    but a balancer that refuses step after step has stopped balancing: the warning names
    the reason of the latest refusal and the task indices, once per streak.
    """


def nonfinite_tasks(gram: Tensor) -> Tensor:
    """``[T]`` bool: tasks whose squared gradient norm (Gram diagonal) is inf or NaN."""
    return ~gram.diagonal().isfinite()


def all_finite(*tensors: Tensor) -> Tensor:
    """0-d bool tensor: every element of every tensor is finite (no host sync).

    One concatenation and one check for all of them: ``isfinite().all()`` is five
    small kernels, and the balancer checks the Gram matrix, the weights and each
    state tensor every step."""
    return torch.cat([t.reshape(-1) for t in tensors]).isfinite().all()
