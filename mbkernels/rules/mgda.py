"""MGDA-UB: the min-norm point of the convex hull of the representation gradients.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
MGDA finds the minimum-norm element of the convex hull of the task gradients; "UB"
(upper bound) applies it to the gradients with respect to the shared representation
``Z`` instead of the shared parameters, which is exactly what the fork provides::

    w = argmin_{w >= 0, sum w = 1} w^T G w

The combined gradient ``d = sum_t w_t g_t`` satisfies ``<d, g_t> >= ||d||^2 >= 0`` for
every task (no task's loss increases to first order), and ``d = 0`` exactly at a
Pareto-stationary point. ``T = 2`` has a closed form; larger ``T`` is solved exactly
in float64 on the ``[T, T]`` Gram matrix by
:func:`mbkernels.rules._simplex.min_norm_weights`: Wolfe's min-norm-point algorithm on
the host (a few ms at ``T = 32`` on a CPU core), or, for a GPU Gram matrix with at most
12 tasks, support enumeration on the GPU (no host sync). ``tests/test_mgda_exact.py``
checks the KKT conditions against scipy for ``T = 2..32``.

A task whose gradient is exactly zero (no labels in the batch) *is* the min-norm point:
MGDA then takes no step, as its definition says. Under ``nonfinite="skip_task"`` the
skipped task is left out of the hull instead.

The weights sum to 1 (the paper's convention), so the step is on the scale of one task's
gradient, not of the sum of ``T`` of them; scale the learning rate accordingly.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ._simplex import min_norm_weights
from .base import Rule, State


class MGDAUB(Rule):
    """Min-norm convex combination of the task gradients (see module docstring)."""

    name = "mgda_ub"

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return min_norm_weights(gram).to(gram.dtype), {}

    def weights_subset(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor
    ) -> tuple[Tensor, State]:
        """The min-norm point of the active tasks' hull (a skipped task's zeroed Gram
        row would otherwise be the min-norm point itself and stop every update)."""
        return min_norm_weights(gram, active).to(gram.dtype), {}
