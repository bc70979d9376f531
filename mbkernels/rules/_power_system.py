"""The positive system ``G w = w^(-p)`` of Nash-MTL (``p = 1``) and FairGrad (``p = 1/alpha``).

For a Gram matrix ``G`` (symmetric positive semi-definite, ``[T, T]``) and ``p > 0`` the
system ``(G w)_t = w_t^(-p)``, ``w > 0``, is the stationarity condition of the strictly
convex function::

    F(w) = 1/2 w^T G w - sum_t h(w_t),   h'(w) = w^(-p)
    h(w) = log w (p = 1),  w^(1-p) / (1-p) (otherwise)

on ``w > 0`` (``h`` is concave, so ``F``'s Hessian ``G + diag(p w^(-p-1))`` is positive
definite). Its minimiser is the unique solution. :func:`solve_power_system` finds it by
Newton's method on ``F`` in float64 NumPy on the host:

* **Scaling.** ``G`` is divided by its mean diagonal ``mu`` and gets a ridge of
  ``RIDGE`` (relative) on the diagonal, so that a minimiser always exists (without it
  none does when a non-negative combination of the gradients vanishes: ``F`` then
  decreases without bound along that direction). The solution ``v`` of the scaled system
  gives the solution of ``G w = w^(-p)`` exactly by ``w = mu^(-1/(1+p)) v``.
* **Start.** ``v_t = G_tt^(-1/(1+p))``, the solution when the gradients are orthogonal.
* **Step.** The Newton direction ``-H^-1 grad F`` (a Jacobi-scaled solve), shortened to
  stay inside ``w > 0`` (at most 99% of the way to the boundary), then halved until ``F``
  decreases by at least a quarter of what the Newton model predicts (Armijo
  backtracking); a full step that stays inside once the squared Newton decrement is below
  ``FULL_STEP_DECREMENT`` (near the solution, where ``F``'s decrease drowns in rounding).
* **Stopping rule.** The squared Newton decrement ``lambda^2 = grad^T H^-1 grad`` (twice
  the predicted decrease of ``F``) below ``NEWTON_TOL``; near the solution Newton's method
  converges quadratically, so the residual ``||G v - v^(-p)||`` is then at rounding level.
  At most ``NEWTON_MAX_ITER`` iterations (a safeguard; random and ill-conditioned Gram
  matrices with ``T <= 32`` need 4-12). Each iteration costs one ``T x T`` linear solve
  and a few evaluations of ``F`` (O(T^2)).

Tasks whose gradient is exactly zero (``G_tt = 0``) have no finite solution (their
``w_t`` would be infinite) and contribute nothing to ``sum_t w_t g_t``; they get weight 0
and the system is solved for the others.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: Ridge added to the scaled system, relative to each diagonal entry: keeps a minimiser
#: when the system has no solution, and moves a solvable one by about this much.
RIDGE = 1e-14
#: Newton's method stops when every equation holds to this relative accuracy:
#: ``|(G w)_t w_t^p - 1| <= RESIDUAL_TOL``.
RESIDUAL_TOL = 1e-12
#: ... or when the squared Newton decrement (twice the decrease of ``F`` that the Newton
#: step promises) falls below this fraction of ``max(1, |F|)``: rounding level.
DECREMENT_TOL = 1e-26
#: Below this squared Newton decrement a feasible full step is taken without line search.
FULL_STEP_DECREMENT = 0.1
#: ... or when the line search finds no decrease of ``F`` at steps down to this length.
MIN_STEP = 1e-12
#: Newton's method stops after this many iterations at the latest.
NEWTON_MAX_ITER = 100
#: Fraction of the step to the boundary of ``w > 0`` that a Newton step may take.
BOUNDARY_FRACTION = 0.99


def _barrier(v: np.ndarray, p: float) -> float:
    """``sum_t h(v_t)`` with ``h' = v^(-p)``."""
    if p == 1.0:
        return float(np.log(v).sum())
    return float((v ** (1.0 - p)).sum() / (1.0 - p))


def _objective(g: np.ndarray, v: np.ndarray, p: float) -> float:
    return 0.5 * float(v @ g @ v) - _barrier(v, p)


def solve_scaled(g: np.ndarray, p: float) -> tuple[np.ndarray, int]:
    """Solve ``g v = v^(-p)`` for a positive-definite ``g`` with unit-order diagonal;
    returns ``(v, Newton iterations)``."""
    v = np.diagonal(g) ** (-1.0 / (1.0 + p))
    f = _objective(g, v, p)
    for it in range(NEWTON_MAX_ITER):
        gv = g @ v
        if float(np.abs(gv * v**p - 1.0).max()) <= RESIDUAL_TOL:
            return v, it
        grad = gv - v ** (-p)
        hess = g + np.diag(p * v ** (-p - 1.0))
        # Jacobi-scaled solve: the weights may span many orders of magnitude
        d = 1.0 / np.sqrt(np.diagonal(hess))
        step = -d * np.linalg.solve(hess * d[:, None] * d[None, :], d * grad)
        decrement = -float(grad @ step)
        if not decrement > DECREMENT_TOL * max(1.0, abs(f)):  # also stops on NaN
            return v, it
        shrinking = step < 0
        t = 1.0
        if shrinking.any():
            t = min(1.0, BOUNDARY_FRACTION * float((v[shrinking] / -step[shrinking]).min()))
        if t == 1.0 and decrement < FULL_STEP_DECREMENT:
            # close to the solution: full Newton steps converge quadratically, and F's
            # decrease is below its rounding error, so no line search
            v = v + step
            f = _objective(g, v, p)
            continue
        while True:
            candidate = v + t * step
            f_new = _objective(g, candidate, p)
            if f_new <= f - 0.25 * t * decrement:
                break
            t *= 0.5
            if t < MIN_STEP:  # no decrease left to find at this precision
                return v, it
        v, f = candidate, f_new
    return v, NEWTON_MAX_ITER


def solve_power_system(gram: Tensor, p: float) -> Tensor:
    """The ``w >= 0`` with ``G w = w^(-p)`` on the tasks with a non-zero gradient and
    ``w_t = 0`` on the others (see module docstring); float64 on ``gram``'s device.

    Runs on the host: a GPU Gram matrix is copied once per call (one sync).
    """
    g = gram.detach().to(device="cpu", dtype=torch.float64).numpy()
    g = 0.5 * (g + g.T)
    diag = np.diagonal(g)
    present = diag > 0
    w = np.zeros(g.shape[0])
    if present.any():
        sub = g[np.ix_(present, present)]
        mu = float(np.diagonal(sub).mean())
        scaled = sub / mu
        scaled = scaled + RIDGE * np.diag(np.diagonal(scaled))
        v, _ = solve_scaled(scaled, p)
        w[present] = v * mu ** (-1.0 / (1.0 + p))
    return torch.from_numpy(w).to(gram.device)
