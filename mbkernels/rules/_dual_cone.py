"""Projection onto the dual cone of the task gradients, solved exactly on the Gram matrix.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization" (2024), Proposition 1:
with the task gradients as the rows of ``J`` and ``G = J J^T``, the projection of
``J^T u`` onto the dual cone ``{x : J x >= 0}`` is ``J^T v`` with::

    v = argmin_v  v^T G v   subject to   v >= u          (elementwise)

a box-constrained QP in ``T`` variables. UPGrad projects every ``p_i e_i`` and sums the
results; DualProj projects ``p`` once.

Solver (exact, float64, fixed work, no host synchronisation), by *active-set
enumeration*: on the optimum some tasks sit on their bound (``v_A = u_A``) and the
others are free, where the stationarity conditions read ``H_FF v_F = -H_FA u_A``. All
``2^T`` free sets (the empty one included) are solved at once (Gauss-Jordan,
:func:`~mbkernels.rules._simplex.batched_spd_solve`, which shares each free set's
matrix among all right-hand sides); every solution with ``v >= u`` is a feasible point,
and ``H`` is positive definite, so the feasible one with the lowest objective is the
unique optimum.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float, check_int
from ._simplex import RIDGE, batched_spd_solve
from .base import Rule
from .linear import check_preferences

#: Largest number of tasks solved exactly (``2^T`` free sets).
MAX_TASKS = 12
#: A candidate counts as feasible when ``v >= u - FEASIBILITY_TOL * max(1, max|u|)``.
FEASIBILITY_TOL = 1e-9


@functools.lru_cache(maxsize=64)
def _free_sets_cpu(num_tasks: int) -> Tensor:
    codes = torch.arange(0, 2**num_tasks, dtype=torch.int64)
    return ((codes[:, None] >> torch.arange(num_tasks)) & 1).to(torch.float64)


def normalized_gram(gram: Tensor, *, norm_eps: float, reg_eps: float) -> Tensor:
    """``G / tr(G) + reg_eps I`` in float64, symmetrised (TorchJD's ``normalize`` then
    ``regularize``); ``G`` counts as zero when ``tr(G) < norm_eps`` or ``tr(G) <= 0``.
    ``reg_eps = 0`` adds :data:`~mbkernels.rules._simplex.RIDGE` instead, so that every
    system the solver meets is positive definite."""
    g = gram.to(torch.float64)
    g = 0.5 * (g + g.T)
    trace = g.diagonal().sum()
    zero = (trace < norm_eps) | (trace <= 0)
    g = torch.where(zero, torch.zeros_like(g), g / torch.where(zero, torch.ones_like(trace), trace))
    eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    if reg_eps > 0:
        return g + reg_eps * eye
    return g + eye * (RIDGE * g.diagonal() + 1e-30)


def project_weights(h: Tensor, u: Tensor, *, separate: bool) -> Tensor:
    """``argmin_v v^T h v`` subject to ``v >= bound``; ``h`` ``[T, T]`` float64 positive
    definite, ``u`` ``[T]``, ``T <= MAX_TASKS``.

    ``separate=False``: one QP with ``bound = u``; returns ``[1, T]`` (DualProj).
    ``separate=True``: ``T`` QPs with ``bound = u_k e_k``; returns ``[T, T]``, row ``k``
    the solution of the ``k``-th (UPGrad).

    Both bound structures keep every product three-dimensional (``[2^T, T, T]``).
    """
    t = h.shape[0]
    if t > MAX_TASKS:
        raise ValueError(
            f"the dual-cone projection enumerates 2^T active sets: T must be in "
            f"[1, {MAX_TASKS}], got {t}"
        )
    m = _free_sets_cpu(t).to(h.device)  # [S, T]: 1 = free, 0 = on its bound
    fixed = 1.0 - m
    eye = torch.eye(t, dtype=h.dtype, device=h.device)
    lhs = h * (m[:, :, None] * m[:, None, :]) + eye * fixed[:, None, :]
    # rhs[s, r, k] = -sum_j h[r, j] bound_k[j] over the rows r free, the columns j fixed
    cross = h * (m[:, :, None] * fixed[:, None, :]) * u  # [S, T, T]: j is the last index
    if separate:
        bounds = torch.diag(u)  # [T, K]: column k is bound_k
        rhs = -cross  # bound_k has its one entry at j = k
    else:
        bounds = u[:, None]
        rhs = -cross.sum(-1, keepdim=True)
    sol = batched_spd_solve(lhs, rhs)
    v = sol * m[:, :, None] + bounds[None, :, :] * fixed[:, :, None]  # [S, T, K]
    # v^T h v = bound^T h v, since (h v)_r = 0 on the free rows and v = bound on the rest
    h_bounds = (h[:, :, None] * bounds[None, :, :]).sum(1)  # [T, K] = h @ bounds
    obj = (v * h_bounds[None]).sum(1)  # [S, K]
    tol = FEASIBILITY_TOL * u.abs().max().clamp_min(1.0)
    ok = ((v - bounds[None]) >= -tol).all(1) & torch.isfinite(obj)
    best = obj.masked_fill(~ok, torch.inf).argmin(0)  # [K]
    k = torch.arange(bounds.shape[1], device=h.device)
    return torch.maximum(v.permute(2, 0, 1)[k, best], bounds.T)


class DualConeRule(Rule):
    """What UPGrad and DualProj share: preferences, ``reg_eps``, ``norm_eps``, the
    ``num_tasks <= 12`` limit of the exact solver, and their ``config``.

    Args:
        num_tasks: number of tasks, in [1, 12].
        preferences: ``p`` (``>= 0``, not all zero); default all ones.
        reg_eps: added to the diagonal of the trace-normalised Gram matrix, in [0, 1]
            (TorchJD's default 1e-4; 0 projects exactly, with a 1e-10 ridge).
        norm_eps: a Gram matrix with trace below this counts as zero, in [0, inf).
    """

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
        self.norm_eps = check_float("norm_eps", norm_eps, low=0.0, high=math.inf, high_open=True)
        self.reg_eps = check_float("reg_eps", reg_eps, low=0.0, high=1.0)

    def _problem(self, gram: Tensor) -> tuple[Tensor, Tensor]:
        """``H`` (the regularised, trace-normalised Gram matrix) and ``p`` in its dtype."""
        h = normalized_gram(gram, norm_eps=self.norm_eps, reg_eps=self.reg_eps)
        return h, torch.tensor(self.preferences, dtype=h.dtype, device=h.device)

    def config(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "preferences": list(self.preferences),
            "reg_eps": self.reg_eps,
            "norm_eps": self.norm_eps,
        }
