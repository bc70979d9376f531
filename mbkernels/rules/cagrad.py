"""CAGrad: conflict-averse gradient descent, on the Gram matrix.

Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
With the average gradient ``g_0 = (1/T) sum_t g_t`` and ``g_w = sum_t w_t g_t``, CAGrad
solves the dual problem over the simplex::

    w* = argmin_{w in simplex}  <g_w, g_0> + c ||g_0|| ||g_w||
    d  = g_0 + c ||g_0|| / ||g_w*|| * g_w*                 (then / (1 + c^2) if rescale)

so the task weights are ``1/T + c ||g_0|| / ||g_w*|| * w*``. Everything is an inner
product: with ``b = 1/T``, ``a = G b``, ``k = c sqrt(b^T G b)`` the objective is
``F(w) = a^T w + k sqrt(w^T G w)``.

Solver (exact, in float64, no iterations): on the face of the simplex with support S the
stationarity conditions ``a_S + k G_S w / s = lam 1``, ``1^T w = 1``, ``s^2 = w^T G w``
reduce, with ``p = G_S^{-1} 1`` and ``q = G_S^{-1} a_S``, to the quadratic
``P lam^2 - 2 Q lam + A - k^2 = 0`` (``P = 1^T p``, ``Q = 1^T q``, ``A = a^T q``) whose
root with ``lam P - Q > 0`` gives ``w = (lam p - q) / sqrt(Q^2 - P (A - k^2))``. All
``2^T - 1`` faces are solved at once and the feasible candidate with the
smallest ``F`` is the optimum, which bounds ``num_tasks`` by
:data:`~mbkernels.rules._simplex.MAX_EXACT_TASKS`. (The authors solve the same problem
with a general-purpose SLSQP solver on the host.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float, check_int
from ._simplex import (
    MAX_EXACT_TASKS,
    allowed_supports,
    batched_spd_solve,
    matvec,
    normalize_gram,
    quad_forms,
)
from .base import Rule, State


class CAGrad(Rule):
    """Conflict-averse gradient (see module docstring).

    Args:
        num_tasks: number of tasks, in [1, 12].
        c: radius of the trust region around the average gradient, in [0, 1)
            (0 is the average gradient; the paper uses 0.2-0.5).
        rescale: divide the update by ``1 + c^2``, as in the authors' experiments.
    """

    name = "cagrad"

    def __init__(self, num_tasks: int, *, c: float = 0.4, rescale: bool = True) -> None:
        check_int("num_tasks", num_tasks, low=1, high=MAX_EXACT_TASKS)
        super().__init__(num_tasks)
        self.c = check_float("c", c, low=0.0, high=1.0, high_open=True)
        if not isinstance(rescale, bool):
            raise ValueError(f"rescale must be True or False, got {rescale!r}")
        self.rescale = rescale

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return self._solve(gram, None), {}

    def weights_subset(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor
    ) -> tuple[Tensor, State]:
        """CAGrad over the active tasks only: their average gradient, their simplex."""
        return self._solve(gram, active), {}

    def _solve(self, gram: Tensor, active: Tensor | None) -> Tensor:
        t = self.num_tasks
        g = normalize_gram(gram)
        keep = torch.ones(t, dtype=g.dtype, device=g.device)
        if active is not None:
            keep = active.to(g.dtype)
        b = keep / keep.sum().clamp_min(1.0)
        a = matvec(g, b)
        k = self.c * (b * a).sum().clamp_min(0).sqrt()

        m, allowed = allowed_supports(t, active, g.device)  # [S, T], [S]
        eye = torch.eye(t, dtype=g.dtype, device=g.device)
        lhs = g * (m[:, :, None] * m[:, None, :]) + eye * (1.0 - m)[:, None, :]
        sol = batched_spd_solve(lhs, torch.stack([m, a * m], dim=-1))
        p, q = sol[..., 0] * m, sol[..., 1] * m
        big_p, big_q, big_a = p.sum(-1), q.sum(-1), (q * a).sum(-1)
        disc = big_q**2 - big_p * (big_a - k**2)
        root = disc.clamp_min(1e-300).sqrt()
        lam = (big_q + root) / big_p
        cand = (lam[:, None] * p - q) / root[:, None]
        norm = quad_forms(cand, g).clamp_min(0).sqrt()
        obj = (cand * a).sum(-1) + k * norm
        ok = (disc > 0) & (cand >= -1e-9).all(-1) & torch.isfinite(obj) & allowed
        best = obj.masked_fill(~ok, torch.inf).argmin()
        w = cand[best].clamp_min(0)
        w = w / w.sum()
        gw_norm = quad_forms(w[None], g)[0].clamp_min(0).sqrt()
        coef = b + k / gw_norm.clamp_min(1e-300) * w
        coef = torch.where((k > 0) & ok.any() & torch.isfinite(coef).all(), coef, b)
        if self.rescale:
            coef = coef / (1.0 + self.c**2)
        return coef.to(gram.dtype)

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "c": self.c, "rescale": self.rescale}
