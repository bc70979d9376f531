"""UPGrad: project every task's gradient onto the dual cone of all of them, and sum.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024. With the task
gradients as the rows of ``J`` and preferences ``p``, each ``p_i g_i`` is projected onto
the dual cone ``{x : <x, g_t> >= 0 for every t}`` and the projections are added::

    d = sum_i pi_J(p_i g_i),    pi_J(J^T u) = J^T v(u),
    v(u) = argmin_v v^T H v  subject to  v >= u,        H = G / tr(G) + reg_eps I

so the task weights are ``w = sum_i v(p_i e_i)``. Every projection makes a non-negative
inner product with every ``g_t``, hence so does ``d`` (non-conflicting); a task without
conflict keeps its ``p_i g_i`` unchanged, so with no conflict at all UPGrad is linear
scalarisation with ``p``. The ``T`` box-constrained QPs are solved exactly on the Gram
matrix by active-set enumeration (:mod:`mbkernels.rules._dual_cone`).

TorchJD's ``UPGrad(pref_vector, QuadprogProjector(norm_eps, reg_eps))`` solves the same
QPs: ``preferences`` is its ``pref_vector`` (TorchJD's default is ``1/T`` each, ours 1
each, so our default update is ``T`` times TorchJD's default one), ``reg_eps`` is its
``reg_eps`` (added after the trace normalisation, as there), ``norm_eps`` its absolute
threshold under which ``tr(G)`` counts as zero (TorchJD's default 1e-4; 0 here, so that
the weights do not depend on the gradients' scale, which on the representation is set
by the batch size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float, check_int
from ._dual_cone import MAX_TASKS, normalized_gram, project_weights
from .base import Rule, State
from .linear import check_preferences


def check_dual_cone_eps(norm_eps: object, reg_eps: object) -> tuple[float, float]:
    """``norm_eps`` in ``[0, inf)`` and ``reg_eps`` in ``[0, 1]``, as floats."""
    return (
        check_float("norm_eps", norm_eps, low=0.0, high=math.inf, high_open=True),
        check_float("reg_eps", reg_eps, low=0.0, high=1.0),
    )


class UPGrad(Rule):
    """Unconflicting projection of gradients (see module docstring).

    Args:
        num_tasks: number of tasks, in [1, 12].
        preferences: ``p`` (``>= 0``, not all zero); default all ones.
        reg_eps: added to the diagonal of the trace-normalised Gram matrix, in [0, 1]
            (TorchJD's default 1e-4; 0 projects exactly, with a 1e-10 ridge).
        norm_eps: a Gram matrix with trace below this counts as zero, in [0, inf).
    """

    name = "upgrad"

    def __init__(
        self,
        num_tasks: int,
        *,
        preferences: Sequence[float] | Tensor | None = None,
        reg_eps: float = 1e-4,
        norm_eps: float = 0.0,
    ) -> None:
        check_int("num_tasks", num_tasks, low=1, high=MAX_TASKS)
        super().__init__(num_tasks)
        self.preferences = check_preferences("preferences", preferences, self.num_tasks)
        self.norm_eps, self.reg_eps = check_dual_cone_eps(norm_eps, reg_eps)

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        h = normalized_gram(gram, norm_eps=self.norm_eps, reg_eps=self.reg_eps)
        p = torch.tensor(self.preferences, dtype=h.dtype, device=h.device)
        v = project_weights(h, p, separate=True)
        return v.sum(0).to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "preferences": list(self.preferences),
            "reg_eps": self.reg_eps,
            "norm_eps": self.norm_eps,
        }
