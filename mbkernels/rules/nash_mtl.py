"""Nash-MTL: the Nash bargaining solution of the tasks, on the Gram matrix.

Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022. The update
``d = sum_t w_t g_t`` is the Nash bargaining solution of the tasks when ``w`` solves::

    G w = 1 / w,   w > 0            (elementwise: <d, g_t> = 1 / w_t)

so every task's first-order gain ``<d, g_t>`` is inversely proportional to its weight,
and ``w^T G w = T``. The authors solve it with a sequence of convex problems (CCP) in
cvxpy/ECOS (up to ``optim_niter = 20`` of them, stopped at ``||G w - 1/w|| < 1e-3``).
Here it is solved to rounding accuracy by Newton's method on the convex function
``1/2 w^T G w - sum_t log w_t`` (:mod:`mbkernels.rules._power_system`, float64 NumPy on
the host: a GPU Gram matrix is copied once per step, one sync).

The authors' code (and TorchJD's port) divides ``G`` by its Frobenius norm for the solver
and multiplies the factor back into the constraints, so its weights solve the system on
``G`` itself, as here. Then ``||d||^2 = w^T G w = T`` whatever the scale of the gradients:
the combined gradient always has norm ``sqrt(T)``. ``max_norm > 0`` rescales ``w`` so that
``||d|| = sqrt(w^T G w) <= max_norm``; that is TorchJD's ``max_norm`` applied to the
representation gradient. The authors clip the *shared parameters'* gradient norm at 1.0,
which has no counterpart on the representation, so clipping is off by default here.

A task whose gradient is exactly zero has no finite weight (``w_t = 1 / 0``) and
contributes nothing; it gets weight 0. When a non-negative combination of the gradients
vanishes (e.g. ``g_2 = -g_1``) the system has no solution at all; the solver's ridge
(``1e-14`` of each diagonal entry) keeps the weights finite (of the order of ``1e7``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float
from ._power_system import solve_power_system
from .base import Rule, State


def clip_update_norm(w: Tensor, gram: Tensor, max_norm: float) -> Tensor:
    """``w`` scaled down so that ``||sum_t w_t g_t|| = sqrt(w^T G w) <= max_norm``
    (``max_norm = 0``: unchanged)."""
    if max_norm == 0.0:
        return w
    norm = ((w[:, None] * gram).sum(0) * w).sum().clamp_min(0).sqrt()
    return torch.where(norm > max_norm, w * (max_norm / norm.clamp_min(1e-300)), w)


class NashMTL(Rule):
    """Nash bargaining weights ``G w = 1 / w`` (see module docstring).

    Args:
        num_tasks: number of tasks.
        max_norm: largest norm of the combined gradient, in [0, inf); 0 turns clipping off.
    """

    name = "nash_mtl"

    def __init__(self, num_tasks: int, *, max_norm: float = 0.0) -> None:
        super().__init__(num_tasks)
        self.max_norm = check_float("max_norm", max_norm, low=0.0, high=float("inf"))

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        g = gram.to(torch.float64)
        g = 0.5 * (g + g.T)
        w = solve_power_system(g, 1.0)
        return clip_update_norm(w, g, self.max_norm).to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "max_norm": self.max_norm}
