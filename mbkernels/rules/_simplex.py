"""Small solvers on the probability simplex, for rules that optimise task weights.

Every problem here lives on the ``[T, T]`` Gram matrix, never on the gradients, so
it is tiny: the solvers work in float64 on the Gram matrix's device with a fixed
amount of work and no data-dependent Python control flow (no host synchronisation).

``simplex_qp`` solves ``min_w 1/2 w^T H w + c^T w`` over ``{w >= 0, sum w = 1}``:

* ``T <= MAX_EXACT_TASKS``: exactly, by *support enumeration*. The optimum lies on
  some face of the simplex; on the face with support ``S`` its KKT conditions are the
  linear system ``H_SS w_S + c_S = lam 1, 1^T w_S = 1``. All ``2^T - 1`` systems are
  solved at once (:func:`batched_spd_solve`); every solution with ``w >= 0`` is a
  feasible point, and the one with the lowest objective is the optimum (the optimum's
  own face is among them). The Gram matrix gets a tiny ridge (``RIDGE`` times its mean
  diagonal) so every system is positive definite, also for rank-deficient gradients.
* larger ``T``: accelerated projected gradient (FISTA) with a fixed number of steps.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: Largest number of tasks solved exactly by support enumeration (2^T - 1 faces).
MAX_EXACT_TASKS = 12
#: Relative ridge added to the (normalised) Gram matrix by the exact solvers.
RIDGE = 1e-10
#: Projected-gradient steps used above ``MAX_EXACT_TASKS``.
PG_STEPS = 1000


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


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` (``[..., T]``) onto the simplex."""
    t = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    k = torch.arange(1, t + 1, dtype=v.dtype, device=v.device)
    cond = (u - css / k) > 0
    rho = (cond * k).amax(-1, keepdim=True)  # last index where cond holds (1-based)
    theta = css.gather(-1, rho.long() - 1) / rho
    return (v - theta).clamp_min(0.0)


def simplex_qp(h: Tensor, c: Tensor, active: Tensor | None = None) -> Tensor:
    """``argmin_w 1/2 w^T h w + c^T w`` over the simplex; ``h`` symmetric PSD, float64.

    ``active`` (bool ``[T]``, optional): only these tasks may get weight; the others get 0.
    """
    t = h.shape[0]
    if t == 1:
        return torch.ones(1, dtype=h.dtype, device=h.device)
    if t <= MAX_EXACT_TASKS:
        return _simplex_qp_exact(h, c, active)
    return _simplex_qp_pg(h, c, active)


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


def _simplex_qp_pg(h: Tensor, c: Tensor, active: Tensor | None, steps: int = PG_STEPS) -> Tensor:
    t = h.shape[0]
    lipschitz = torch.linalg.eigvalsh(h)[-1].clamp_min(1e-30)
    keep = torch.ones(t, dtype=h.dtype, device=h.device) if active is None else active.to(h.dtype)
    w = keep / keep.sum().clamp_min(1.0)
    y, momentum = w, 1.0
    for _ in range(steps):
        # inactive coordinates are pinned to 0 by an infinite cost (-inf before projection)
        step = y - (matvec(h, y) + c) / lipschitz
        w_next = project_simplex(torch.where(keep > 0, step, torch.full_like(step, -1e300)))
        m_next = (1.0 + (1.0 + 4.0 * momentum**2) ** 0.5) / 2.0
        y = w_next + ((momentum - 1.0) / m_next) * (w_next - w)
        w, momentum = w_next, m_next
    return w


def min_norm_weights(gram: Tensor, active: Tensor | None = None) -> Tensor:
    """``argmin_{w in simplex} ||sum_t w_t g_t||^2`` from the Gram matrix (float64).

    Closed form for ``T = 2``; :func:`simplex_qp` otherwise. ``active``: as there.
    """
    g = normalize_gram(gram)
    t = g.shape[0]
    if t == 2 and active is None:
        denom = g[0, 0] + g[1, 1] - 2.0 * g[0, 1]
        a = ((g[1, 1] - g[0, 1]) / torch.where(denom > 0, denom, torch.ones_like(denom))).clamp(
            0.0, 1.0
        )
        a = torch.where(denom > 0, a, torch.full_like(a, 0.5))
        return torch.stack([a, 1.0 - a])
    return simplex_qp(2.0 * g, torch.zeros(t, dtype=g.dtype, device=g.device), active)
