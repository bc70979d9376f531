"""MGDA-UB's min-norm point is exact for every T up to 32 (KKT conditions, and scipy).

The min-norm point ``w* = argmin_{w in simplex} w^T G w`` is characterised by its KKT
conditions: with ``lam = w^T G w``, ``(G w)_t >= lam`` for every task (dual feasibility:
``<d, g_t> >= |d|^2``, no task conflicts with the update) and ``(G w)_t = lam`` on the
support. Both are checked with residuals relative to the largest squared norm, on
random, rank-deficient and nearly parallel gradients, and the objective is compared with
scipy's non-negative least squares (Lawson-Hanson active set) on the same problem.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

import mbkernels as mbk
from mbkernels.rules import _simplex

KINDS = ("random", "rank_deficient", "near_parallel", "spread_scales")
#: KKT residual bound, relative to the largest squared gradient norm.
KKT_TOL = 1e-9


def _grads(kind: str, t: int, seed: int, dim: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((t, dim))
    if kind == "rank_deficient":
        rank = max(1, t // 3)
        return rng.standard_normal((t, rank)) @ rng.standard_normal((rank, dim))
    if kind == "near_parallel":
        return rng.standard_normal(dim) + 1e-4 * rng.standard_normal((t, dim))
    return rng.standard_normal((t, dim)) * 10.0 ** rng.uniform(-4, 4, (t, 1))


def kkt_residuals(gram: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(dual infeasibility, support stationarity), relative to max_t G_tt."""
    gw = gram @ w
    lam = w @ gw
    scale = gram.diagonal().max()
    dual = max(0.0, float((lam - gw).max())) / scale
    support = w > 0
    stationarity = float(np.abs(gw[support] - lam).max()) / scale
    return dual, stationarity


def scipy_min_norm(gram: np.ndarray) -> float:
    """``min w^T G w`` over the simplex as scipy's NNLS finds it (the KKT check above is
    the certificate of optimality; this is an independent second opinion).

    With ``G = L L^T``, ``w^T G w = |L^T w|^2``; the simplex's equality becomes one more
    least-squares row ``rho * sum(w) = rho`` with a large weight ``rho``, and
    ``w >= 0`` is NNLS's own constraint. The solution is scaled onto the simplex, so the
    value returned is that of a feasible point: never below the true minimum.
    """
    t = gram.shape[0]
    scale = gram.diagonal().max()
    g = gram / scale
    eigvals, eigvecs = np.linalg.eigh(g)
    factor = eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))  # g = factor @ factor.T
    rho = 1e6
    a = np.vstack([factor.T, np.full((1, t), rho)])
    b = np.zeros(t + 1)
    b[-1] = rho
    w, _ = nnls(a, b, maxiter=50 * t)
    w /= w.sum()
    return float(w @ g @ w) * scale


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", range(2, 33))
def test_min_norm_point_satisfies_kkt_and_beats_scipy(kind: str, t: int) -> None:
    m = _grads(kind, t, seed=t)
    gram = m @ m.T
    w = mbk.MGDAUB(t).weights(torch.from_numpy(gram), {}, torch.tensor(1))[0].numpy()
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    dual, stationarity = kkt_residuals(gram, w)
    assert dual <= KKT_TOL and stationarity <= KKT_TOL, (dual, stationarity)
    # no task conflicts with the update: <d, g_t> >= |d|^2 >= 0
    d = w @ m
    assert (m @ d >= d @ d - KKT_TOL * gram.diagonal().max()).all()
    assert w @ gram @ w <= scipy_min_norm(gram) + 1e-10 * gram.diagonal().max()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", [3, 7, 12])
def test_gpu_path_support_enumeration_satisfies_kkt(kind: str, t: int) -> None:
    """Up to 12 tasks a GPU Gram matrix is solved by support enumeration (no host sync);
    the same function on CPU tensors, checked the same way (the ridge bounds its error)."""
    m = _grads(kind, t, seed=100 + t)
    gram = torch.from_numpy(m @ m.T)
    g = _simplex.normalize_gram(gram)
    w = _simplex.simplex_qp(2.0 * g, torch.zeros(t, dtype=torch.float64)).numpy()
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    dual, stationarity = kkt_residuals(gram.numpy(), w)
    assert dual <= 1e-8 and stationarity <= 1e-8, (dual, stationarity)


def test_sixteen_tasks_through_the_fork_never_conflict() -> None:
    """At T = 16 an approximate solver (projected gradient with a fixed step count) stops
    short of the optimum and can leave a task in conflict; the fork's combined gradient
    must be the min-norm point and conflict with no task."""
    t = 16
    rng = np.random.default_rng(5)
    m = rng.standard_normal((t, 40)) + 0.5 * rng.standard_normal(40)
    grads = [torch.from_numpy(row).reshape(8, 5) for row in m]
    bal = mbk.Balancer(mbk.MGDAUB(t))
    z = torch.zeros(8, 5, dtype=torch.float64, requires_grad=True)
    sum((o * g).sum() for o, g in zip(bal(z), grads)).backward()
    d = z.grad.reshape(-1).numpy()
    scale = (m**2).sum(1).max()
    assert (m @ d >= d @ d - KKT_TOL * scale).all()
    assert d @ d <= scipy_min_norm(m @ m.T) + 1e-10 * scale


@pytest.mark.parametrize("t", [5, 20, 32])
def test_inactive_tasks_are_left_out_of_the_hull(t: int) -> None:
    m = _grads("random", t, seed=7)
    gram = m @ m.T
    active = np.zeros(t, dtype=bool)
    active[::2] = True
    w = (
        mbk.MGDAUB(t)
        .weights_subset(torch.from_numpy(gram), {}, torch.tensor(1), torch.from_numpy(active))[0]
        .numpy()
    )
    assert (w[~active] == 0).all() and abs(w.sum() - 1) < 1e-12
    sub = gram[np.ix_(active, active)]
    dual, stationarity = kkt_residuals(sub, w[active])
    assert dual <= KKT_TOL and stationarity <= KKT_TOL


def test_simplex_qp_refuses_more_tasks_than_it_enumerates() -> None:
    t = _simplex.MAX_EXACT_TASKS + 1
    with pytest.raises(ValueError, match=r"T must be in \[1, 12\], got 13"):
        _simplex.simplex_qp(torch.eye(t, dtype=torch.float64), torch.zeros(t, dtype=torch.float64))


def test_solve_time_at_32_tasks_is_milliseconds() -> None:
    """A loose bound (a busy 2-core CI machine): the solve is a few ms, not seconds."""
    m = _grads("random", 32, seed=0, dim=64)
    gram = torch.from_numpy(m @ m.T)
    rule = mbk.MGDAUB(32)
    rule.weights(gram, {}, torch.tensor(1))
    start = time.perf_counter()
    for _ in range(5):
        rule.weights(gram, {}, torch.tensor(1))
    assert (time.perf_counter() - start) / 5 < 0.25
