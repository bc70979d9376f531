"""Every rule that TorchJD (0.18) also has, through the fork, against TorchJD's aggregator.

TorchJD works at parameter level: an aggregator maps a Jacobian ``J`` (rows = task
gradients) to one vector. Here ``J``'s rows are the task gradients on the representation:
``loss_t = <z, J[t]>``, so ``dL_t/dz = J[t]``; a :class:`mbkernels.Balancer` with the rule
forks ``z``, one backward runs, and ``z.grad`` is the combined vector. It must equal
TorchJD's aggregation of ``J`` (or the stated relation, where the definitions differ on
purpose: docs/rules.md, "TorchJD"). Jacobians: random (norms over two orders), rank
deficient, nearly parallel, strongly conflicting (opposite pairs), one zero row; T = 2..8.

Tolerances, relative to ``scale = sum_t ||J[t]||`` (the size of the sum of the rows):
1e-9 for closed forms and exact QPs (TorchJD's quadprog and our active-set enumeration
solve the same QP to rounding); 1e-6 where a pseudo-inverse of an ill-conditioned cosine
matrix enters (nearly parallel rows); CAGrad 1e-5 (TorchJD's interior-point CLARABEL
solve); MGDA by the min-norm certificate (TorchJD's Frank-Wolfe stops early).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
import torchjd.aggregation as tjd
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

import mbkernels as mbk

KINDS = ("random", "rank_deficient", "near_parallel", "conflicting", "zero_row")
CASES = [(kind, t) for kind in KINDS for t in range(2, 9)]
SHAPE = (4, 6)  # z: [B, D], D_total = 24 >= T
DIM = SHAPE[0] * SHAPE[1]


def jacobian(kind: str, t: int, seed: int = 0) -> torch.Tensor:
    """``[t, DIM]`` float64 rows of the given kind."""
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{t}/{seed}".encode()))
    if kind == "random":
        m = rng.standard_normal((t, DIM)) * 10.0 ** rng.uniform(-1, 1, size=(t, 1))
    elif kind == "rank_deficient":
        r = max(1, t - 2)
        m = rng.standard_normal((t, r)) @ rng.standard_normal((r, DIM))
    elif kind == "near_parallel":
        m = rng.standard_normal(DIM) + 1e-3 * rng.standard_normal((t, DIM))
        m *= rng.uniform(0.5, 2.0, size=(t, 1))
    elif kind == "conflicting":
        m = rng.standard_normal((t, DIM))
        m[1::2] = -m[0::2][: t // 2] * rng.uniform(0.5, 2.0, size=(t // 2, 1))
        m += 0.05 * rng.standard_normal((t, DIM))
    elif kind == "zero_row":
        m = rng.standard_normal((t, DIM))
        m[t // 2] = 0.0
    else:
        raise AssertionError(kind)
    return torch.from_numpy(m)


def through_fork(rule: mbk.Rule, jac: torch.Tensor, steps: int = 1) -> Iterator[torch.Tensor]:
    """``z.grad`` (flat) after each of ``steps`` steps of a Balancer running ``rule``,
    with ``loss_t = <z, J[t]>`` and one backward per step."""
    bal = mbk.Balancer(rule)
    for _ in range(steps):
        z = torch.zeros(SHAPE, dtype=torch.float64, requires_grad=True)
        zs = bal(z)
        sum((z_t * jac[t].view_as(z_t)).sum() for t, z_t in enumerate(zs)).backward()
        assert z.grad is not None
        yield z.grad.reshape(-1).clone()


def fork(rule: mbk.Rule, jac: torch.Tensor) -> torch.Tensor:
    return next(through_fork(rule, jac))


def scale(jac: torch.Tensor) -> float:
    return float(jac.norm(dim=1).sum())


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, jac: torch.Tensor, rtol: float):
    err = float((ours - theirs).norm())
    assert err <= rtol * scale(jac), (err, scale(jac))


def prefs(t: int) -> torch.Tensor:
    return torch.linspace(0.5, 2.0, t, dtype=torch.float64)


# ------------------------------------------------------------------- equal, linear
@pytest.mark.parametrize(("kind", "t"), CASES)
def test_equal_is_torchjd_sum_and_t_times_mean(kind: str, t: int) -> None:
    jac = jacobian(kind, t)
    ours = fork(mbk.Equal(t), jac)
    assert_same(ours, tjd.Sum()(jac), jac, 1e-12)
    assert_same(ours, t * tjd.Mean()(jac), jac, 1e-12)


@pytest.mark.parametrize(("kind", "t"), CASES)
def test_linear_is_torchjd_constant(kind: str, t: int) -> None:
    jac = jacobian(kind, t)
    ours = fork(mbk.FixedWeights(t, prefs(t)), jac)
    assert_same(ours, tjd.Constant(prefs(t))(jac), jac, 1e-12)


# ------------------------------------------------------------- UPGrad, DualProj
@pytest.mark.parametrize(("kind", "t"), CASES)
def test_upgrad_is_t_times_torchjd_default_and_equal_with_preferences(kind: str, t: int):
    """Our default preferences are 1 each, TorchJD's 1/T: the QP is positively
    homogeneous in the bounds, so ours is exactly T times TorchJD's default."""
    jac = jacobian(kind, t)
    assert_same(fork(mbk.UPGrad(t), jac), t * tjd.UPGrad()(jac), jac, 1e-9)
    ours = fork(mbk.UPGrad(t, preferences=prefs(t)), jac)
    assert_same(ours, tjd.UPGrad(pref_vector=prefs(t))(jac), jac, 1e-9)


@pytest.mark.parametrize(("kind", "t"), CASES)
def test_dualproj_is_t_times_torchjd_default_and_equal_with_preferences(kind: str, t: int):
    jac = jacobian(kind, t)
    assert_same(fork(mbk.DualProj(t), jac), t * tjd.DualProj()(jac), jac, 1e-9)
    ours = fork(mbk.DualProj(t, preferences=prefs(t)), jac)
    assert_same(ours, tjd.DualProj(pref_vector=prefs(t))(jac), jac, 1e-9)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize("reg_eps", [0.0, 1e-6, 1e-2])
def test_dual_cone_eps_map_to_torchjds_projector(name: str, reg_eps: float) -> None:
    """``reg_eps`` is the projector's ``reg_eps``; ``norm_eps`` its absolute threshold on
    ``tr(G)``: with rows small enough that ``tr(G) < 1e-4`` TorchJD's default treats the
    Gram matrix as 0 (plain mean), ours (``norm_eps=0``) does not, and ``norm_eps=1e-4``
    reproduces TorchJD. ``reg_eps = 0`` in TorchJD's quadprog needs a positive-definite
    Gram matrix: full-rank rows here, and no zeroed Gram matrix (quadprog rejects it)."""
    ours_cls = {"upgrad": mbk.UPGrad, "dualproj": mbk.DualProj}[name]
    theirs_cls = {"upgrad": tjd.UPGrad, "dualproj": tjd.DualProj}[name]
    from torchjd.linalg import QuadprogProjector

    t = 4
    jac = jacobian("conflicting", t)
    projector = QuadprogProjector(norm_eps=1e-4, reg_eps=reg_eps)
    theirs = theirs_cls(pref_vector=prefs(t), projector=projector)
    ours = fork(ours_cls(t, preferences=prefs(t), reg_eps=reg_eps), jac)
    assert_same(ours, theirs(jac), jac, 1e-9 if reg_eps else 1e-7)

    small = jac * 1e-3  # tr(G) = 1e-6 * tr(J J^T) < 1e-4
    assert float((small**2).sum()) < 1e-4
    mean = tjd.Constant(prefs(t))(small)
    if reg_eps > 0:
        assert_same(theirs(small), mean, small, 1e-9)  # TorchJD: no projection at all
    ours_small = fork(ours_cls(t, preferences=prefs(t), reg_eps=reg_eps), small)
    assert_same(ours_small, ours * 1e-3, small, 1e-7)  # ours: scale-invariant
    ours_thresh = fork(ours_cls(t, preferences=prefs(t), reg_eps=reg_eps, norm_eps=1e-4), small)
    assert_same(ours_thresh, mean, small, 1e-9)  # TorchJD's default threshold


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    t=st.integers(2, 8),
    log_spread=st.floats(0, 3),
    name=st.sampled_from(["upgrad", "dualproj"]),
)
def test_dual_cone_rules_match_torchjd_on_drawn_jacobians(
    seed: int, t: int, log_spread: float, name: str
) -> None:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((t, DIM)) * 10.0 ** rng.uniform(-log_spread, log_spread, (t, 1))
    m[rng.random(t) < 0.3] *= -1.0  # flip some rows: conflicts
    jac = torch.from_numpy(m)
    ours_cls = {"upgrad": mbk.UPGrad, "dualproj": mbk.DualProj}[name]
    theirs_cls = {"upgrad": tjd.UPGrad, "dualproj": tjd.DualProj}[name]
    assert_same(fork(ours_cls(t), jac), t * theirs_cls()(jac), jac, 1e-9)


# ------------------------------------------------------------------------- ConFIG
@pytest.mark.parametrize(("kind", "t"), CASES)
def test_config_is_torchjd_config(kind: str, t: int) -> None:
    """Same default (preferences 1 each, the sum's scale)."""
    jac = jacobian(kind, t)
    # near-parallel rows, and the pseudo-inverse of a rank-deficient one (whose rounding
    # differs between LAPACK builds and CPUs: 7e-9 on one Xeon), are ill-conditioned
    rtol = {"near_parallel": 1e-6, "rank_deficient": 1e-7}.get(kind, 1e-9)
    assert_same(fork(mbk.ConFIG(t), jac), tjd.ConFIG()(jac), jac, rtol)
    ours = fork(mbk.ConFIG(t, preferences=prefs(t)), jac)
    assert_same(ours, tjd.ConFIG(pref_vector=prefs(t))(jac), jac, rtol)


# ------------------------------------------------------------------- Random / RLW
def _patched(monkeypatch: pytest.MonkeyPatch, name: str, values: list[torch.Tensor]) -> None:
    """Make ``torch.<name>`` return the given tensors, one per call, in order."""
    queue = list(values)

    def fake(*args, dtype=None, device=None, **kwargs):
        out = queue.pop(0)
        return out if dtype is None else out.to(dtype)

    monkeypatch.setattr(torch, name, fake)


@pytest.mark.parametrize(("kind", "t"), CASES[::3])
def test_rlw_is_torchjd_random_given_the_same_normal_draws(
    monkeypatch: pytest.MonkeyPatch, kind: str, t: int
) -> None:
    """TorchJD's ``Random`` draws ``torch.randn(T)`` from the global generator; handing
    it our draws of each step (``rlw_normals(seed, step, T)``) gives the same vectors, over
    several steps (the balancer's step counts from 1)."""
    jac = jacobian(kind, t)
    ours = list(through_fork(mbk.RLW(t, seed=7), jac, steps=3))
    draws = [mbk.rules.rlw_normals(7, step, t) for step in (1, 2, 3)]
    _patched(monkeypatch, "randn", draws)
    aggregator = tjd.Random()
    for mine in ours:
        assert_same(mine, aggregator(jac), jac, 1e-12)


def test_rlw_weights_have_torchjds_law() -> None:
    """In law: two-sample Kolmogorov-Smirnov test of each task's weight (T = 3), 3000 of
    our steps against 3000 of TorchJD's draws from a seeded global generator."""
    t, n = 3, 3000
    rule = mbk.RLW(t, seed=1)
    gram = torch.eye(t, dtype=torch.float64)
    ours = torch.stack([rule.weights(gram, {}, torch.tensor(s))[0] for s in range(1, n + 1)])
    torch.manual_seed(0)
    weighting = tjd.RandomWeighting()
    mat = torch.zeros(t, 2, dtype=torch.float64)
    theirs = torch.stack([weighting(mat) for _ in range(n)])
    for k in range(t):
        assert sps.ks_2samp(ours[:, k].numpy(), theirs[:, k].numpy()).pvalue > 1e-3
    # and the normal draws themselves are standard normal
    z = torch.stack([mbk.rules.rlw_normals(1, s, t) for s in range(1, n + 1)])
    assert sps.kstest(z.reshape(-1).numpy(), "norm").pvalue > 1e-3


# ---------------------------------------------------------------- existing rules
@pytest.mark.parametrize(("kind", "t"), CASES)
def test_mgda_ub_is_the_min_norm_point_torchjds_frank_wolfe_approaches(kind: str, t: int):
    """Both weightings sum to 1. TorchJD's Frank-Wolfe (small ``epsilon``) stops near the
    min-norm point; ours is exact. The min-norm point ``d*`` of a convex set satisfies
    ``||d||^2 >= ||d*||^2 + ||d - d*||^2`` for every ``d`` in the set: TorchJD's result
    certifies ours, and the two must be close."""
    jac = jacobian(kind, t)
    ours = fork(mbk.MGDAUB(t), jac)
    theirs = tjd.MGDA(epsilon=1e-8, max_iters=2000)(jac)
    sq = scale(jac) ** 2
    gap = float(theirs @ theirs - ours @ ours)
    assert gap >= float((theirs - ours) @ (theirs - ours)) - 1e-10 * sq
    assert_same(ours, theirs, jac, 2e-2)


@pytest.mark.parametrize(("kind", "t"), CASES)
def test_pcgrad_is_torchjd_pcgrad_with_our_visiting_order(
    monkeypatch: pytest.MonkeyPatch, kind: str, t: int
) -> None:
    """TorchJD draws a ``torch.randperm(T)`` per task (skipping the task itself); handing
    it our order of step 1 (``pcgrad_orders(seed, 1, T)``) makes both deterministic and
    equal. (Not comparable draw for draw otherwise: ours hashes ``(seed, step)``.)"""
    jac = jacobian(kind, t)
    ours = fork(mbk.PCGrad(t, seed=5), jac)
    orders = mbk.rules.pcgrad_orders(5, 1, t)
    perms = [torch.cat([torch.tensor([i]), orders[i]]) for i in range(t)]
    _patched(monkeypatch, "randperm", perms)
    assert_same(ours, tjd.PCGrad()(jac), jac, 1e-12)


def cagrad_objective(gram: torch.Tensor, weights: torch.Tensor, c: float) -> float:
    """CAGrad's dual objective ``<g_w, g_0> + c ||g_0|| ||g_w||`` at the inner weights
    ``w* = (w - 1/T)`` (renormalised) recovered from the final weights ``w``."""
    t = gram.shape[0]
    inner = (weights - 1.0 / t).clamp_min(0)
    inner = inner / inner.sum()
    g0 = torch.full((t,), 1.0 / t, dtype=gram.dtype)
    return float(inner @ gram @ g0 + c * (g0 @ gram @ g0).sqrt() * (inner @ gram @ inner).sqrt())


@pytest.mark.parametrize(("kind", "t"), CASES)
def test_cagrad_without_rescale_is_torchjd_cagrad(kind: str, t: int) -> None:
    """TorchJD's CAGrad does not divide by ``1 + c^2``: ``rescale=False`` is TorchJD's,
    ``rescale=True`` (our default, the authors' experiments) is it divided by ``1 + c^2``.
    TorchJD's interior-point solve (CLARABEL) stops at about 1e-9 of the objective, where
    the weights can still move by 1e-4: ours must reach an objective no higher, and the
    vectors agree to 1e-4.

    A zero row makes ``w* = e_zero`` optimal with ``g_w* = 0``: TorchJD then returns the
    zero vector (its ``norm_eps`` branch), ours the mean gradient, as the authors' code
    (``g_0 + c ||g_0|| / (||g_w|| + 1e-4) g_w`` with ``g_w = 0``)."""
    pytest.importorskip("cvxpy")
    c = 0.4
    jac = jacobian(kind, t)
    theirs = tjd.CAGrad(c=c)(jac)
    ours = fork(mbk.CAGrad(t, c=c, rescale=False), jac)
    if kind == "zero_row":
        assert float(theirs.abs().max()) == 0.0
        assert_same(ours, tjd.Mean()(jac), jac, 1e-12)
        return
    gram = jac @ jac.T
    w_ours, _ = mbk.CAGrad(t, c=c, rescale=False).weights(gram, {}, torch.tensor(1))
    w_theirs = tjd.CAGradWeighting(c=c)(gram)
    sq = float(gram.diagonal().max())
    assert cagrad_objective(gram, w_ours, c) <= cagrad_objective(gram, w_theirs, c) + 1e-12 * sq
    assert_same(ours, theirs, jac, 1e-4)
    assert_same(fork(mbk.CAGrad(t, c=c), jac), theirs / (1 + c * c), jac, 1e-4)


@pytest.mark.parametrize(("kind", "t"), CASES)
def test_imtl_g_is_torchjd_imtlg_on_the_unit_directions(kind: str, t: int) -> None:
    """Ours pseudo-inverts the cosine matrix (unit directions), TorchJD the Gram matrix.
    The relation for every Jacobian: our weights are TorchJD's weights of the unit rows
    ``U``, divided by the norms and renormalised to sum 1. Where ``U b = 1`` is
    solvable (rows independent or consistent), both give the same vector; for
    rank-deficient rows the least-squares residuals are weighted differently (TorchJD's
    by the norms) and the vectors differ on purpose."""
    jac = jacobian(kind, t)
    ours = fork(mbk.IMTLG(t), jac)
    norms = jac.norm(dim=1)
    units = torch.nan_to_num(jac / norms[:, None])
    w_units = tjd.IMTLGWeighting()(units @ units.T)
    if float(w_units.abs().sum()) == 0.0:
        # 1^T C^+ 1 = 0 (e.g. two exactly opposite rows): TorchJD's weights are then 0,
        # ours fall back to equal weights 1/T (the mean)
        assert_same(ours, tjd.Mean()(jac), jac, 1e-12)
        return
    x = torch.where(norms > 0, w_units / torch.where(norms > 0, norms, 1.0), 0.0)
    rtol = 1e-6 if kind == "near_parallel" else 1e-9
    assert_same(ours, (x / x.sum()) @ jac, jac, rtol)
    if kind != "rank_deficient":
        assert_same(ours, tjd.IMTLG()(jac), jac, rtol)


@pytest.mark.parametrize(("kind", "t"), CASES)
def test_aligned_mtl_is_t_times_torchjd_default(kind: str, t: int) -> None:
    """Same ``sigma_min G^{-1/2} p`` (scale mode "min"); TorchJD's default ``p`` is 1/T."""
    jac = jacobian(kind, t)
    rtol = 1e-6 if kind == "near_parallel" else 1e-9
    assert_same(fork(mbk.AlignedMTL(t), jac), t * tjd.AlignedMTL()(jac), jac, rtol)
    ours = fork(mbk.AlignedMTL(t, preferences=prefs(t)), jac)
    assert_same(ours, tjd.AlignedMTL(pref_vector=prefs(t))(jac), jac, rtol)


# ------------------------------------------------------------------- the contract
ORACLE_RULES: dict[str, Callable[[int], object]] = {
    "equal": lambda t: tjd.Sum(),
    "linear": lambda t: tjd.Constant(torch.ones(t, dtype=torch.float64)),
    "mgda_ub": lambda t: tjd.MGDA(),
    "pcgrad": lambda t: tjd.PCGrad(),
    "imtl_g": lambda t: tjd.IMTLG(),
    "cagrad": lambda t: tjd.CAGrad(c=0.4),
    "aligned_mtl": lambda t: tjd.AlignedMTL(),
    "upgrad": lambda t: tjd.UPGrad(),
    "dualproj": lambda t: tjd.DualProj(),
    "config": lambda t: tjd.ConFIG(),
    "rlw": lambda t: tjd.Random(),
    # compared in tests/test_torchjd_oracle_b.py (cvxpy-backed Nash-MTL, the power system)
    "nash_mtl": lambda t: tjd.NashMTL(n_tasks=t, max_norm=0.0),
    "fairgrad": lambda t: tjd.FairGrad(alpha=1.0),
    "gradvac": lambda t: tjd.GradVac(),
}


def test_every_rule_torchjd_also_has_is_compared_here() -> None:
    """Our rules without a TorchJD counterpart: MultiBalance, max-norm and DB-MTL's gradient
    half (EMAs of the norms)."""
    assert set(mbk.RULES) - set(ORACLE_RULES) == {"multibalance", "max_norm", "db_mtl"}
    jac = jacobian("random", 3)
    for make in ORACLE_RULES.values():
        assert make(3)(jac).shape == (DIM,)  # type: ignore[operator]
    assert math.isfinite(scale(jac))
