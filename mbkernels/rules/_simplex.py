"""Small solvers on the probability simplex, for rules that optimise task weights.

Every problem here lives on the ``[T, T]`` Gram matrix, never on the gradients, so
it is tiny. The enumeration solvers work in float64 on the Gram matrix's device with a
fixed amount of work and no data-dependent Python control flow (no host
synchronisation); :func:`min_norm_point` (more than ``MAX_EXACT_TASKS`` tasks) iterates
on the host.

``simplex_qp`` solves ``min_w 1/2 w^T H w + c^T w`` over ``{w >= 0, sum w = 1}``:

* ``T <= MAX_EXACT_TASKS``: exactly, by *support enumeration*. The optimum lies on
  some face of the simplex; on the face with support ``S`` its KKT conditions are the
  linear system ``H_SS w_S + c_S = lam 1, 1^T w_S = 1``. All ``2^T - 1`` systems are
  solved at once (:func:`batched_spd_solve`); every solution with ``w >= 0`` is a
  feasible point, and the one with the lowest objective is the optimum (the optimum's
  own face is among them). The Gram matrix gets a tiny ridge (``RIDGE`` times its mean
  diagonal) so every system is positive definite, also for rank-deficient gradients.

:func:`min_norm_weights` (MGDA's min-norm point) uses it up to ``MAX_EXACT_TASKS`` and
above that :func:`min_norm_point`, Wolfe's exact min-norm-point algorithm, on the host.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

#: Largest number of tasks solved exactly by support enumeration (2^T - 1 faces).
MAX_EXACT_TASKS = 12
#: Relative ridge added to the (normalised) Gram matrix by the exact solvers.
RIDGE = 1e-10
#: Optimality tolerance of :func:`min_norm_point`, relative to the largest squared norm.
WOLFE_TOL = 1e-13
#: Weights at or below this count as 0 in :func:`min_norm_point`'s minor cycles.
WOLFE_POSITIVE = 1e-14
#: :func:`min_norm_point` stops after this many major cycles per task (a safeguard:
#: the algorithm ends long before, typically after fewer than ``T`` major cycles).
WOLFE_MAX_CYCLES = 8


@functools.lru_cache(maxsize=64)
def _supports_cpu(num_tasks: int) -> Tensor:
    codes = torch.arange(1, 2**num_tasks, dtype=torch.int64)
    return ((codes[:, None] >> torch.arange(num_tasks)) & 1).to(torch.float64)


def supports(num_tasks: int, device: torch.device) -> Tensor:
    """``[2^T - 1, T]`` float64 0/1 masks of every non-empty subset of the tasks."""
    return _supports_cpu(num_tasks).to(device)


def batched_spd_solve(a: Tensor, b: Tensor) -> Tensor:
    """Solve ``a x = b`` for a batch of symmetric positive-definite ``a`` (``[S, n, n]``,
    ``b`` ``[S, n, k]``) by Gauss-Jordan elimination without pivoting (stable for SPD).

    Plain elementwise tensor ops instead of batched LAPACK: on a CPU shared with other
    work, batched LAPACK calls on tiny matrices were measured to spend 10-30 ms per call
    waiting for their OpenMP threads (0.01 ms single-threaded); these ops stay cheap.
    """
    a = a.clone()
    b = b.clone()
    for i in range(a.shape[-1]):
        pivot = a[:, i, i].unsqueeze(-1)
        row_a = a[:, i, :] / pivot
        row_b = b[:, i, :] / pivot
        col = a[:, :, i].clone()
        col[:, i] = 0.0
        a -= col[:, :, None] * row_a[:, None, :]
        b -= col[:, :, None] * row_b[:, None, :]
        a[:, i, :] = row_a
        b[:, i, :] = row_b
    return b


def quad_forms(w: Tensor, h: Tensor) -> Tensor:
    """``w_s^T h w_s`` for each row of ``w`` (``[S, T]``), as elementwise ops.

    Elementwise products and sums instead of matrix products on purpose: BLAS calls on
    tiny matrices were measured to cost up to 60 ms on a busy CPU (thread hand-offs),
    against microseconds for these.
    """
    return ((w.unsqueeze(-1) * h).sum(-2) * w).sum(-1)


def matvec(h: Tensor, v: Tensor) -> Tensor:
    """``h @ v`` for a small matrix, as elementwise ops (see :func:`quad_forms`)."""
    return (h * v).sum(-1)


def normalize_gram(gram: Tensor, *, ridge: float = RIDGE) -> Tensor:
    """``gram`` in float64, symmetrised, divided by its mean diagonal (1 if that is 0),
    plus ``ridge`` times the identity.

    Every solver here is invariant to a positive rescaling of the Gram matrix, so this
    only conditions the numbers.
    """
    g = gram.to(torch.float64)
    g = 0.5 * (g + g.T)
    scale = g.diagonal().mean()
    g = g / torch.where(scale > 0, scale, torch.ones_like(scale))
    eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    return g + ridge * eye


def simplex_qp(h: Tensor, c: Tensor, active: Tensor | None = None) -> Tensor:
    """``argmin_w 1/2 w^T h w + c^T w`` over the simplex; ``h`` symmetric PSD, float64,
    ``T <= MAX_EXACT_TASKS`` (exact support enumeration, on ``h``'s device, no host sync).

    ``active`` (bool ``[T]``, optional): only these tasks may get weight; the others get 0.
    """
    t = h.shape[0]
    if t > MAX_EXACT_TASKS:
        raise ValueError(
            f"simplex_qp enumerates the 2^T - 1 faces of the simplex: T must be in "
            f"[1, {MAX_EXACT_TASKS}], got {t} (min_norm_weights solves any T)"
        )
    if t == 1:
        return torch.ones(1, dtype=h.dtype, device=h.device)
    return _simplex_qp_exact(h, c, active)


def allowed_supports(
    num_tasks: int, active: Tensor | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Support masks (``[S, T]`` float64) and which of them use only active tasks."""
    m = supports(num_tasks, device)
    if active is None:
        return m, torch.ones(m.shape[0], dtype=torch.bool, device=device)
    return m, ((m > 0) & ~active[None, :]).any(-1).logical_not()


def _simplex_qp_exact(h: Tensor, c: Tensor, active: Tensor | None) -> Tensor:
    # On the face with support S the KKT conditions give, with p = H_S^-1 1 and
    # q = H_S^-1 c_S:  w = lam p - q,  lam = (1 + 1^T q) / (1^T p).
    t = h.shape[0]
    m, allowed = allowed_supports(t, active, h.device)  # [S, T], [S]
    eye = torch.eye(t, dtype=h.dtype, device=h.device)
    lhs = h * (m[:, :, None] * m[:, None, :]) + eye * (1.0 - m)[:, None, :]
    sol = batched_spd_solve(lhs, torch.stack([m, c * m], dim=-1))
    p, q = sol[..., 0] * m, sol[..., 1] * m
    lam = (1.0 + q.sum(-1)) / p.sum(-1)
    w = lam[:, None] * p - q
    obj = 0.5 * quad_forms(w, h) + (w * c).sum(-1)
    ok = (w >= -1e-9).all(-1) & torch.isfinite(obj) & allowed
    obj = torch.where(ok, obj, torch.full_like(obj, torch.inf))
    best = w[obj.argmin()].clamp_min(0.0)
    return best / best.sum()


def min_norm_weights(gram: Tensor, active: Tensor | None = None) -> Tensor:
    """``argmin_{w in simplex} ||sum_t w_t g_t||^2`` from the Gram matrix (float64), exact
    for every ``T``.

    Closed form for ``T = 2``. Otherwise Wolfe's min-norm-point algorithm
    (:func:`min_norm_point`) on the host: free of synchronisation for a CPU Gram matrix,
    and about 0.2-2 ms at ``T = 32``. A GPU Gram matrix with ``T <= MAX_EXACT_TASKS`` is
    solved on the GPU by support enumeration instead (:func:`simplex_qp`: no host sync,
    exact up to the ridge ``RIDGE``); above that it is copied to the host (one sync).
    ``active``: as in :func:`simplex_qp`.
    """
    t = gram.shape[0]
    if t > 2 and (t > MAX_EXACT_TASKS or gram.device.type == "cpu"):
        host = normalize_gram(gram, ridge=0.0).cpu().numpy()
        keep = None if active is None else active.cpu().numpy()
        w = torch.from_numpy(min_norm_point(host, keep))
        return w.to(device=gram.device, dtype=torch.float64)
    g = normalize_gram(gram)
    if t == 2 and active is None:
        denom = g[0, 0] + g[1, 1] - 2.0 * g[0, 1]
        a = ((g[1, 1] - g[0, 1]) / torch.where(denom > 0, denom, torch.ones_like(denom))).clamp(
            0.0, 1.0
        )
        a = torch.where(denom > 0, a, torch.full_like(a, 0.5))
        return torch.stack([a, 1.0 - a])
    return simplex_qp(2.0 * g, torch.zeros(t, dtype=g.dtype, device=g.device), active)


def min_norm_point(gram: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
    """``argmin_{w in simplex} w^T G w`` exactly, by Wolfe's min-norm-point algorithm on the
    Gram matrix (float64 NumPy on the host; ``gram`` normalised, symmetric PSD ``[T, T]``).

    Wolfe (1976), "Finding the nearest point in a polytope", written on inner products: the
    points are the task gradients, known only through ``G``. A *corral* ``S`` of affinely
    independent points carries the current point ``x = sum_S w_t g_t``; each major cycle
    adds the point that most violates optimality (``<g_j, x> < |x|^2``), each minor cycle
    moves ``x`` to the affine minimiser of ``S`` (the KKT system ``G_SS v = mu 1``,
    ``1^T v = 1``) or, if that leaves the simplex, to the boundary on the way there and
    drops the points whose weight reached 0. Every cycle lowers ``|x|`` strictly, so no
    corral repeats and it ends after finitely many cycles, at a point satisfying the
    optimality (KKT) conditions ``<g_t, x> >= |x|^2`` for every task, with equality on the
    support, up to :data:`WOLFE_TOL` times the largest squared norm.

    ``active`` (bool ``[T]``, optional): only these tasks take part; the others get 0.
    """
    t = gram.shape[0]
    idx = np.arange(t) if active is None else np.flatnonzero(active)
    w = np.zeros(t)
    if idx.size == 0:
        return w
    g = gram[np.ix_(idx, idx)]
    n = idx.size
    diag = np.diag(g)
    tol = WOLFE_TOL * max(float(diag.max()), 1e-300)
    corral = [int(np.argmin(diag))]
    v = np.zeros(n)
    v[corral[0]] = 1.0
    best, best_xx = v.copy(), float(diag[corral[0]])
    for _ in range(WOLFE_MAX_CYCLES * n):
        gx = g @ v
        xx = float(v @ gx)
        if xx > best_xx:  # rounding made a cycle go uphill: keep the lower point, stop
            break
        best, best_xx = v.copy(), xx
        j = int(np.argmin(gx))
        if gx[j] >= xx - tol or j in corral:  # optimal (up to tol), or no progress possible
            break
        corral.append(j)
        for _ in range(n + 1):  # minor cycles: each drops at least one point
            s = np.array(corral)
            kkt = np.zeros((len(s) + 1, len(s) + 1))
            kkt[:-1, :-1] = g[np.ix_(s, s)]
            kkt[:-1, -1] = 1.0
            kkt[-1, :-1] = 1.0
            rhs = np.zeros(len(s) + 1)
            rhs[-1] = 1.0
            y = _solve_kkt(kkt, rhs)
            if (y > WOLFE_POSITIVE).all():
                v[:] = 0.0
                v[s] = y
                break
            cur = v[s]
            down = y <= WOLFE_POSITIVE
            theta = float(np.min(cur[down] / np.maximum(cur[down] - y[down], 1e-300)))
            theta = min(max(theta, 0.0), 1.0)
            new = (1.0 - theta) * cur + theta * y
            keep = new > WOLFE_POSITIVE
            if keep.all() or not keep.any():  # rounding: drop exactly the smallest weight
                keep[:] = True
                keep[int(np.argmin(new))] = False
            v[:] = 0.0
            v[s[keep]] = new[keep]
            corral = [int(k) for k in s[keep]]
            v /= v.sum()
    w[idx] = best / best.sum()
    return w


def _solve_kkt(kkt: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The affine minimiser's weights from its KKT system: a direct solve, or least squares
    when the corral's points are (numerically) affinely dependent."""
    try:
        y = np.linalg.solve(kkt, rhs)
        if np.isfinite(y).all() and np.abs(kkt @ y - rhs).max() <= 1e-9:
            return y[:-1]
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:-1]
