"""DualProj: project the combined gradient onto the dual cone of the task gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (after GEM,
Lopez-Paz & Ranzato, NeurIPS 2017, Eq. 11). The preference-weighted sum ``J^T p`` is
projected onto ``{x : <x, g_t> >= 0 for every t}``::

    d = pi_J(J^T p) = J^T v,    v = argmin_v v^T H v  subject to  v >= p,
    H = G / tr(G) + reg_eps I

so the task weights are ``w = v``: one box-constrained QP, solved exactly on the Gram
matrix by active-set enumeration (:mod:`mbkernels.rules._dual_cone`). With no conflict
``J^T p`` is already in the cone and DualProj is linear scalarisation with ``p``.

The hyperparameters map to TorchJD's ``DualProj(pref_vector, QuadprogProjector(norm_eps,
reg_eps))`` as for :class:`~mbkernels.rules.UPGrad` (our default ``p`` is all ones,
TorchJD's ``1/T``: our default update is ``T`` times TorchJD's default one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..validation import check_int
from ._dual_cone import MAX_TASKS, normalized_gram, project_weights
from .base import Rule, State
from .linear import check_preferences
from .upgrad import check_dual_cone_eps


class DualProj(Rule):
    """Dual-cone projection of the preference-weighted sum (see module docstring).

    Args:
        num_tasks: number of tasks, in [1, 12].
        preferences: ``p`` (``>= 0``, not all zero); default all ones.
        reg_eps: added to the diagonal of the trace-normalised Gram matrix, in [0, 1]
            (TorchJD's default 1e-4; 0 projects exactly, with a 1e-10 ridge).
        norm_eps: a Gram matrix with trace below this counts as zero, in [0, inf).
    """

    name = "dualproj"

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
        return project_weights(h, p, separate=False)[0].to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "preferences": list(self.preferences),
            "reg_eps": self.reg_eps,
            "norm_eps": self.norm_eps,
        }
