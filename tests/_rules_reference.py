"""Independent float64 NumPy references of every balancing rule.

Each works on the task gradients themselves (the rows of ``M``, ``T x D``), the way the
papers state the methods, and returns the combined update ``d`` (``D``). The library
works on the Gram matrix ``M M^T`` only and returns weights ``w``; the tests compare
``w @ M`` with ``d``. Solvers here are general-purpose (SciPy's SLSQP), not the
library's support enumeration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from mbkernels.rules import pcgrad_orders


def equal(m: np.ndarray) -> np.ndarray:
    return m.sum(0)


def linear(m: np.ndarray, prefs: Sequence[float]) -> np.ndarray:
    return np.asarray(prefs) @ m


def multibalance(
    m: np.ndarray,
    ema: np.ndarray,
    step: int,
    *,
    beta: float,
    relax: float,
    reference: str,
    target: int = 0,
    eps: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (d, new_ema)."""
    norms = np.linalg.norm(m, axis=1)
    ema = beta * ema + (1 - beta) * norms
    mh = ema / (1 - beta**step)
    ref = {"target": mh[target], "mean": mh.mean(), "max": mh.max()}[reference]
    w = np.where(mh > 0, relax * ref / (mh + eps) + (1 - relax), 1.0)
    return w @ m, ema


def max_norm(
    m: np.ndarray, ema: np.ndarray, step: int, *, beta: float, eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """DB-MTL-style: sum of unit directions scaled to the largest EMA magnitude."""
    norms = np.linalg.norm(m, axis=1)
    ema = beta * ema + (1 - beta) * norms
    scale = ema.max() / (1 - beta**step)
    d = np.zeros(m.shape[1])
    for g, n in zip(m, norms):
        d += g * (scale / (n + eps) if n > 0 else 1.0)
    return d, ema


def _simplex_minimize(fun, t: int) -> np.ndarray:
    best = None
    starts = [np.full(t, 1.0 / t)] + [np.eye(t)[i] * 0.9 + 0.1 / t for i in range(t)]
    for x0 in starts:
        res = minimize(
            fun,
            x0,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * t,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        w = np.clip(res.x, 0, None)
        w = w / w.sum()
        if best is None or fun(w) < fun(best):
            best = w
    return best


def _unit_scale(m: np.ndarray) -> np.ndarray:
    """m divided by its largest row norm: SLSQP's tolerances are absolute."""
    top = np.linalg.norm(m, axis=1).max()
    return m / top if top > 0 else m


def mgda(m: np.ndarray) -> np.ndarray:
    """Min-norm point of the convex hull of the rows of m."""
    mu = _unit_scale(m)
    w = _simplex_minimize(lambda w: float(np.sum((w @ mu) ** 2)), m.shape[0])
    return w @ m


def pcgrad(m: np.ndarray, *, seed: int, step: int) -> np.ndarray:
    """Algorithm 1 of Yu et al. on the vectors, with the library's visiting order."""
    t = m.shape[0]
    orders = pcgrad_orders(seed, step, t).numpy() if t > 1 else np.zeros((1, 0), int)
    out = np.zeros(m.shape[1])
    for i in range(t):
        gi = m[i].copy()
        for j in orders[i]:
            dot = gi @ m[j]
            if dot < 0 and m[j] @ m[j] > 0:
                gi = gi - dot / (m[j] @ m[j]) * m[j]
        out += gi
    return out


def imtl_g(m: np.ndarray) -> np.ndarray:
    """The paper's closed form: alpha_2..T = g_1 U^T (D U^T)^-1, alpha_1 = 1 - sum."""
    t = m.shape[0]
    if t == 1:
        return m[0].copy()
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    dmat = m[0] - m[1:]
    umat = u[0] - u[1:]
    alpha_rest = np.linalg.solve((dmat @ umat.T).T, umat @ m[0])
    alpha = np.concatenate([[1 - alpha_rest.sum()], alpha_rest])
    return alpha @ m


def cagrad(m: np.ndarray, *, c: float, rescale: bool = True) -> np.ndarray:
    w = cagrad_inner(m, c)
    g0 = m.mean(0)
    k = c * np.linalg.norm(g0)
    gw = w @ m
    d = g0 + (k / np.linalg.norm(gw)) * gw if k > 0 else g0
    return d / (1 + c**2) if rescale else d


def cagrad_inner(m: np.ndarray, c: float) -> np.ndarray:
    """argmin over the simplex of <g_w, g_0> + c ||g_0|| ||g_w|| (SLSQP)."""
    mu = _unit_scale(m)
    g0 = mu.mean(0)
    k = c * np.linalg.norm(g0)
    return _simplex_minimize(
        lambda w: float((w @ mu) @ g0 + k * np.linalg.norm(w @ mu)), m.shape[0]
    )


def cagrad_objective(m: np.ndarray, w: np.ndarray, c: float) -> float:
    g0 = m.mean(0)
    gw = w @ m
    return float(gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw))


def aligned_mtl(m: np.ndarray, prefs: Sequence[float], rtol: float = 1e-12) -> np.ndarray:
    """sigma_min U V^T from the SVD of the gradient matrix, then (.)^T p."""
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    keep = s**2 > rtol * s[0] ** 2 if s[0] > 0 else np.zeros_like(s, bool)
    if not keep.any():
        return np.asarray(prefs) @ m
    u, s, vt = u[:, keep], s[keep], vt[keep]
    aligned = s.min() * u @ vt
    return np.asarray(prefs) @ aligned


def dual_cone_projection(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``argmin_y ||y - x||^2`` subject to ``m y >= 0``: the primal projection onto the dual
    cone of the rows (Quinton & Rey, Eq. 3), by SLSQP on the vectors."""
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    mu = m[norms[:, 0] > 0] / norms[norms[:, 0] > 0]  # <g_t, y> >= 0 iff <u_t, y> >= 0
    xs = x / max(float(np.linalg.norm(x)), 1e-300)
    res = minimize(
        lambda y: float(np.sum((y - xs) ** 2)),
        xs.copy(),
        jac=lambda y: 2.0 * (y - xs),
        method="SLSQP",
        constraints=[{"type": "ineq", "fun": lambda y: mu @ y, "jac": lambda y: mu}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return res.x * max(float(np.linalg.norm(x)), 1e-300)


def upgrad(m: np.ndarray, prefs: Sequence[float]) -> np.ndarray:
    """Sum of the projections of ``p_i g_i`` onto the dual cone (no regularisation)."""
    return sum(dual_cone_projection(m, p * g) for p, g in zip(prefs, m))


def dualproj(m: np.ndarray, prefs: Sequence[float]) -> np.ndarray:
    """The projection of ``sum_i p_i g_i`` onto the dual cone (no regularisation)."""
    return dual_cone_projection(m, np.asarray(prefs) @ m)


def config(m: np.ndarray, prefs: Sequence[float]) -> np.ndarray:
    """ConFIG's Eq. 2 on the vectors: ``e = normalize(pinv(U) p)``, ``d = (sum_t g_t.e) e``."""
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    units = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
    b = np.linalg.pinv(units) @ np.asarray(prefs)
    if np.linalg.norm(b) == 0:
        return np.zeros(m.shape[1])
    e = b / np.linalg.norm(b)
    return float((m @ e).sum()) * e


def power_system(m: np.ndarray, p: float) -> np.ndarray:
    """Weights ``w > 0`` with ``<sum_k w_k g_k, g_t> = w_t^(-p)`` for every task t: SciPy's
    ``least_squares`` on ``w >= 0`` from ``w = 1/T``, as in FairGrad's code, with the
    residuals computed from the vectors."""
    from scipy.optimize import least_squares

    def residual(w: np.ndarray) -> np.ndarray:
        return m @ (w @ m) - w ** (-p)

    start = np.full(m.shape[0], 1.0 / m.shape[0])
    res = least_squares(
        residual, start, bounds=(0, np.inf), xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10_000
    )
    return res.x


def power_system_solvable(m: np.ndarray) -> bool:
    """Whether no non-negative combination of the rows of m (summing to 1) is ~0: an LP
    minimising the largest |coordinate| of the combination over the simplex."""
    from scipy.optimize import linprog

    t, d = m.shape
    scale = np.linalg.norm(m, axis=1).max()
    if scale == 0 or (np.linalg.norm(m, axis=1) == 0).any():
        return False
    mu = m / np.linalg.norm(m, axis=1, keepdims=True)
    # variables (w, s): min s  s.t.  -s <= (w @ mu)_k <= s,  sum w = 1, w >= 0
    c = np.r_[np.zeros(t), 1.0]
    a_ub = np.block([[mu.T, -np.ones((d, 1))], [-mu.T, -np.ones((d, 1))]])
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[np.ones(t), 0.0][None], b_eq=[1.0])
    return bool(res.status == 0 and res.fun > 1e-3)


def nash_mtl(m: np.ndarray, *, max_norm: float = 0.0) -> np.ndarray:
    """Navon et al.: ``G w = 1/w``, the update clipped to ``max_norm`` (0: no clipping)."""
    d = power_system(m, 1.0) @ m
    norm = np.linalg.norm(d)
    return d * (max_norm / norm) if 0 < max_norm < norm else d


def fairgrad(m: np.ndarray, *, alpha: float) -> np.ndarray:
    """Ban & Ji: ``G w = w^(-1/alpha)``."""
    return power_system(m, 1.0 / alpha) @ m


def gradvac(
    m: np.ndarray, phi_hat: np.ndarray, *, beta: float, seed: int, step: int, eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's per-pair correction on the vectors, with the library's visiting order
    and ``eps`` relative to the mean squared norm. Returns (d, new phi_hat)."""
    t = m.shape[0]
    scale = np.sqrt(np.einsum("td,td->t", m, m).mean())
    mu = m / scale if scale > 0 else m
    orders = pcgrad_orders(seed, step, t).numpy() if t > 1 else np.zeros((1, 0), int)
    phi_hat = phi_hat.copy()
    out = np.zeros(m.shape[1])
    for i in range(t):
        gi = mu[i].copy()
        for j in orders[i]:
            ni, nj = np.linalg.norm(gi), np.linalg.norm(mu[j])
            phi = gi @ mu[j] / (ni * nj + eps)
            target = phi_hat[i, j]
            if phi < target and nj > 0:
                a, b = np.sqrt(max(1 - phi**2, 0)), np.sqrt(max(1 - target**2, 0))
                gi = gi + ni * (target * a - phi * b) / (nj * b + eps) * mu[j]
            phi_hat[i, j] = (1 - beta) * target + beta * phi
        out += gi
    return out * scale, phi_hat


def db_mtl(
    m: np.ndarray, ema: np.ndarray, step: int, *, beta: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """EMA of the norms with rate ``beta / k^sigma``; ``w_t = max_i m_i / m_t`` (the bias
    correction is common to all tasks here and cancels). Returns (d, new_ema)."""
    norms = np.linalg.norm(m, axis=1)
    rate = beta / step**sigma
    ema = rate * ema + (1 - rate) * norms
    w = np.where(ema > 0, ema.max() / np.where(ema > 0, ema, 1.0), 1.0)
    return w @ m, ema
