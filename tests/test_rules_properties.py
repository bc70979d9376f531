"""Properties of every balancing rule on the Gram matrix, against float64 references.

Gradient matrices ``M`` (tasks x dims) are drawn by hypothesis in three kinds: random
with magnitudes over six orders, rank-deficient (fewer directions than tasks), and
near-parallel (a common direction plus 1e-4 noise). The rules see ``G = M M^T`` only;
the combined update is ``w @ M``.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mbkernels as mbk

from . import _rules_reference as ref

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
KINDS = ("random", "rank_deficient", "near_parallel")

#: name -> hyperparameters used in these tests (defaults otherwise)
RULE_KWARGS: dict[str, dict] = {
    "equal": {},
    "linear": {},
    "multibalance": {"reference": "mean"},
    "max_norm": {},
    "mgda_ub": {},
    "pcgrad": {"seed": 3},
    "imtl_g": {},
    "cagrad": {"c": 0.4},
    "aligned_mtl": {},
    "upgrad": {},
    "dualproj": {},
    "config": {},
    "rlw": {"seed": 2},
    "nash_mtl": {},
    "fairgrad": {"alpha": 2.0},
    "gradvac": {"beta": 0.5, "seed": 3},
    "db_mtl": {"sigma": 0.5},
}
#: rules whose weights solve ``G w = w^(-p)``: scaling the gradients by c scales the
#: weights by ``c^(-2/(1+p))``, and for gradients with a vanishing non-negative
#: combination no solution exists (the solver's ridge keeps the weights finite).
POWER_RULES = {"nash_mtl": 1.0, "fairgrad": 0.5}


def make_grads(seed: int, t: int, kind: str, d: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        m = rng.standard_normal((t, d))
        m *= 10.0 ** rng.uniform(-3, 3, size=(t, 1))
    elif kind == "rank_deficient":
        r = max(1, t - 2)
        m = rng.standard_normal((t, r)) @ rng.standard_normal((r, d))
    else:
        base = rng.standard_normal(d)
        m = base + 1e-4 * rng.standard_normal((t, d))
        m *= rng.uniform(0.5, 2.0, size=(t, 1))
    return m


grads_strategy = st.builds(
    make_grads,
    seed=st.integers(0, 2**31 - 1),
    t=st.integers(1, 6),
    kind=st.sampled_from(KINDS),
)


def gram_of(m: np.ndarray) -> torch.Tensor:
    mt = torch.from_numpy(m)
    return mt @ mt.T


def run_rule(rule: mbk.Rule, gram: torch.Tensor, steps: int = 1) -> torch.Tensor:
    state = rule.init_state()
    w = torch.empty(0)
    for s in range(1, steps + 1):
        w, state = rule.weights(gram, state, torch.tensor(s))
    return w


def g_distance(w1: torch.Tensor, w2: torch.Tensor, gram: torch.Tensor) -> float:
    """|| (w1 - w2) @ M || computed from the Gram matrix."""
    diff = (w1 - w2).double()
    return math.sqrt(max(float(diff @ gram @ diff), 0.0))


def combined_scale(m: np.ndarray) -> float:
    return float(np.abs(m).sum(0).max()) + 1e-300


# --------------------------------------------------------------- general properties
@pytest.mark.parametrize("name", list(RULE_KWARGS))
@SETTINGS
@given(m=grads_strategy, active_seed=st.integers(0, 1000))
def test_rules_without_cross_terms_ignore_the_off_diagonal(
    name: str, m: np.ndarray, active_seed: int
) -> None:
    """``uses_cross_terms = False`` is what lets the balancer compute only the norms:
    such a rule must give the same weights and state from ``diag(G)`` as from ``G``
    (over three steps, and with tasks dropped by ``weights_subset``). Rules that
    claim to use the cross terms must actually depend on them somewhere."""
    t = m.shape[0]
    rule = mbk.make_rule(name, t, **RULE_KWARGS[name])
    if rule.uses_cross_terms:
        return  # checked below, on a case where the inner products matter
    gram = gram_of(m)
    diag = gram.diagonal().diag()
    active = torch.from_numpy(np.random.default_rng(active_seed).random(t) < 0.7)
    for run in ("weights", "weights_subset"):
        states = [rule.init_state(), rule.init_state()]
        for s in range(1, 4):
            outs = []
            for k, g in enumerate((gram, diag)):
                if run == "weights":
                    outs.append(rule.weights(g, states[k], torch.tensor(s)))
                else:
                    outs.append(rule.weights_subset(g, states[k], torch.tensor(s), active))
            (w_full, st_full), (w_diag, st_diag) = outs
            torch.testing.assert_close(w_full, w_diag, rtol=0, atol=0)
            for key in st_full:
                torch.testing.assert_close(st_full[key], st_diag[key], rtol=0, atol=0)
            states = [st_full, st_diag]


@pytest.mark.parametrize("name", [n for n in RULE_KWARGS if mbk.RULES[n].uses_cross_terms])
def test_rules_with_cross_terms_depend_on_them(name: str) -> None:
    """Three gradients of unequal norms, once mostly aligned and once in conflict: a
    rule that uses the inner products gives other weights (skipping them would be
    wrong). Two tasks are not enough: IMTL-G's T = 2 weights depend on the norms only."""
    aligned = torch.tensor([[1.0, 0, 0], [1.2, 1.6, 0], [0, 0.5, 3]], dtype=torch.float64)
    conflict = torch.tensor([[1.0, 0, 0], [-1.2, 1.6, 0], [0, -0.5, 3]], dtype=torch.float64)
    rule = mbk.make_rule(name, 3, **RULE_KWARGS[name])
    w_a = run_rule(rule, aligned @ aligned.T, steps=2)
    w_c = run_rule(rule, conflict @ conflict.T, steps=2)
    assert not torch.allclose(w_a, w_c, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(RULE_KWARGS))
@SETTINGS
@given(m=grads_strategy, perm_seed=st.integers(0, 1000))
def test_permutation_equivariance(name: str, m: np.ndarray, perm_seed: int) -> None:
    """Permuting the tasks permutes the weights: the combined update is unchanged."""
    if name in ("pcgrad", "gradvac", "rlw"):
        pytest.skip(
            "random per task index (PCGrad's and GradVac's order, RLW's draws): "
            "equivariant in law only"
        )
    if name in POWER_RULES and not ref.power_system_solvable(m):
        return  # no solution: the weights are the solver ridge's artefact
    t = m.shape[0]
    perm = np.random.default_rng(perm_seed).permutation(t)
    gram = gram_of(m)
    w = run_rule(mbk.make_rule(name, t, **RULE_KWARGS[name]), gram, steps=2)
    w_perm = run_rule(mbk.make_rule(name, t, **RULE_KWARGS[name]), gram_of(m[perm]), steps=2)
    back = torch.empty_like(w_perm)
    back[torch.from_numpy(perm)] = w_perm
    tol = (1e-5 if name in ("imtl_g", "aligned_mtl", "config") else 1e-7) * combined_scale(m)
    assert g_distance(w, back, gram) <= tol


@pytest.mark.parametrize("name", list(RULE_KWARGS))
@SETTINGS
@given(m=grads_strategy, log_c=st.floats(-6, 6))
def test_common_rescaling_invariance(name: str, m: np.ndarray, log_c: float) -> None:
    """Scaling every gradient by c > 0 leaves the weights unchanged (so the update scales
    by c). Every rule here promises this; MultiBalance and max-norm up to their eps."""
    if name in POWER_RULES and not ref.power_system_solvable(m):
        return  # no solution: the weights are the solver ridge's artefact
    t = m.shape[0]
    gram = gram_of(m)
    c = 10.0**log_c
    w = run_rule(mbk.make_rule(name, t, **RULE_KWARGS[name]), gram, steps=2)
    w_c = run_rule(mbk.make_rule(name, t, **RULE_KWARGS[name]), gram * c**2, steps=2)
    if name in ("multibalance", "max_norm"):  # eps = 1e-8 against norms >= ~1e-6 here
        scaled = m * c
        if np.linalg.norm(scaled, axis=1).min() < 1e-3 or np.linalg.norm(m, axis=1).min() < 1e-3:
            return
        torch.testing.assert_close(w_c, w, rtol=1e-4, atol=0)
        return
    if name in POWER_RULES:  # G w = w^(-p) on c^2 G: w / c^(2/(1+p))
        w_c = w_c * c ** (2.0 / (1.0 + POWER_RULES[name]))
    tol = 1e-5 if name in ("imtl_g", "aligned_mtl", "cagrad", "config") else 1e-7
    assert g_distance(w, w_c, gram) <= tol * combined_scale(m)


@pytest.mark.parametrize("name", list(RULE_KWARGS))
@SETTINGS
@given(m=grads_strategy)
def test_weights_finite_shape_dtype(name: str, m: np.ndarray) -> None:
    t = m.shape[0]
    for dtype in (torch.float32, torch.float64):
        w = run_rule(mbk.make_rule(name, t, **RULE_KWARGS[name]), gram_of(m).to(dtype), steps=2)
        assert w.shape == (t,) and w.dtype == dtype and torch.isfinite(w).all()


@pytest.mark.parametrize("name", list(RULE_KWARGS))
def test_all_zero_gradients_give_finite_weights(name: str) -> None:
    w = run_rule(mbk.make_rule(name, 3, **RULE_KWARGS[name]), torch.zeros(3, 3), steps=2)
    assert torch.isfinite(w).all()


# ------------------------------------------------------- each rule vs its reference
@SETTINGS
@given(m=grads_strategy, prefs_seed=st.integers(0, 100))
def test_linear_matches_reference(m: np.ndarray, prefs_seed: int) -> None:
    t = m.shape[0]
    prefs = np.random.default_rng(prefs_seed).uniform(0, 3, t).tolist()
    w = run_rule(mbk.FixedWeights(t, prefs), gram_of(m))
    np.testing.assert_allclose(w.numpy() @ m, ref.linear(m, prefs), rtol=1e-12, atol=1e-300)


@SETTINGS
@given(m=grads_strategy, reference=st.sampled_from(mbk.rules.REFERENCES))
def test_multibalance_matches_reference(m: np.ndarray, reference: str) -> None:
    t = m.shape[0]
    rule = mbk.MultiBalanceRule(t, beta=0.8, relax=0.6, reference=reference, target=t - 1)
    state, ema = rule.init_state(), np.zeros(t)
    gram = gram_of(m)
    for step in range(1, 4):
        scaled = m * (1.0 + 0.3 * step)
        w, state = rule.weights(gram * (1.0 + 0.3 * step) ** 2, state, torch.tensor(step))
        d, ema = ref.multibalance(
            scaled, ema, step, beta=0.8, relax=0.6, reference=reference, target=t - 1
        )
        # the EMA state is stored in float32, hence 1e-6
        np.testing.assert_allclose(w.numpy() @ scaled, d, rtol=1e-6, atol=1e-6 * np.abs(d).max())


@SETTINGS
@given(m=grads_strategy, beta=st.sampled_from([0.0, 0.5, 0.9]))
def test_max_norm_matches_reference(m: np.ndarray, beta: float) -> None:
    t = m.shape[0]
    rule = mbk.MaxNorm(t, beta=beta)
    state, ema = rule.init_state(), np.zeros(t)
    for step in range(1, 4):
        scaled = m * np.linspace(1, 2, t)[:, None] ** step
        w, state = rule.weights(gram_of(scaled), state, torch.tensor(step))
        d, ema = ref.max_norm(scaled, ema, step, beta=beta)
        np.testing.assert_allclose(w.numpy() @ scaled, d, rtol=1e-6, atol=1e-6 * np.abs(d).max())


@SETTINGS
@given(m=grads_strategy)
def test_mgda_ub_is_the_min_norm_point_and_non_conflicting(m: np.ndarray) -> None:
    t = m.shape[0]
    w = run_rule(mbk.MGDAUB(t), gram_of(m)).numpy()
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    d = w @ m
    scale = float((m**2).sum(1).max())
    # Optimality certificate of the min-norm point: <d, g_t> >= ||d||^2 for every task,
    # hence non-conflicting: <d, g_t> >= 0.
    dots = m @ d
    assert (dots >= d @ d - 1e-8 * scale).all()
    assert (dots >= -1e-8 * scale).all()
    # and no worse than a general-purpose solver
    d_ref = ref.mgda(m)
    assert d @ d <= d_ref @ d_ref + 1e-9 * scale


@SETTINGS
@given(m=grads_strategy, step=st.integers(1, 10_000))
def test_pcgrad_matches_vector_algorithm(m: np.ndarray, step: int) -> None:
    t = m.shape[0]
    w, _ = mbk.PCGrad(t, seed=5).weights(gram_of(m), {}, torch.tensor(step))
    d = ref.pcgrad(m, seed=5, step=step)
    scale = np.abs(m).max() * t
    np.testing.assert_allclose(w.numpy() @ m, d, rtol=1e-7, atol=1e-7 * scale)


def test_pcgrad_order_is_deterministic_and_varies_with_seed_and_step() -> None:
    a = mbk.rules.pcgrad_orders(0, 7, 6)
    assert torch.equal(a, mbk.rules.pcgrad_orders(0, 7, 6))
    assert not torch.equal(a, mbk.rules.pcgrad_orders(1, 7, 6))
    assert not torch.equal(a, mbk.rules.pcgrad_orders(0, 8, 6))
    for i, row in enumerate(a.tolist()):
        assert sorted(row) == [j for j in range(6) if j != i]
    # every ordering of the others shows up over many steps (T = 3: 2 orders per task)
    seen = {tuple(mbk.rules.pcgrad_orders(0, s, 3)[0].tolist()) for s in range(1, 50)}
    assert seen == {(1, 2), (2, 1)}


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    t=st.integers(2, 6),
    log_scales=st.lists(st.floats(-2, 2), min_size=6, max_size=6),
)
def test_imtl_g_matches_paper_closed_form(seed: int, t: int, log_scales: list[float]) -> None:
    # well-conditioned draws: IMTL-G solves a linear system in G, whose condition number
    # is the square of the gradients' (the reference inherits the same sensitivity)
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((t, 7)) * 10.0 ** rng.uniform(-1, 1, size=(t, 1))
    w = run_rule(mbk.IMTLG(t), gram_of(m)).numpy()
    d = ref.imtl_g(m)
    np.testing.assert_allclose(w @ m, d, rtol=1e-6, atol=1e-6 * np.abs(d).max())
    # equal projections on every unit task direction
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    proj = u @ (w @ m)
    np.testing.assert_allclose(proj, np.full(t, proj[0]), rtol=1e-6, atol=1e-9 * abs(proj[0]))
    # rescaling single tasks leaves the combined line unchanged (its sign follows
    # sum_t w_t = 1, which can flip)
    scaled = m * 10.0 ** np.asarray(log_scales[:t])[:, None]
    d2 = run_rule(mbk.IMTLG(t), gram_of(scaled)).numpy() @ scaled
    cos = d @ d2 / (np.linalg.norm(d) * np.linalg.norm(d2))
    assert abs(cos) > 1 - 1e-8


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    t=st.integers(2, 8),
    task=st.integers(0, 7),
    factor=st.sampled_from([1e-8, 1e-4, 1e4, 1e8]),
)
def test_imtl_g_is_invariant_to_one_tasks_scale(seed: int, t: int, task: int, factor: float):
    """Scaling one task's gradient by up to 1e+-8 leaves the combined line unchanged and
    the projections on the unit task directions equal (the same sign for every task)."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((t, 9))
    scaled = m.copy()
    scaled[task % t] *= factor
    d = run_rule(mbk.IMTLG(t), gram_of(m)).numpy() @ m
    d2 = run_rule(mbk.IMTLG(t), gram_of(scaled)).numpy() @ scaled
    cos = d @ d2 / (np.linalg.norm(d) * np.linalg.norm(d2))
    assert abs(cos) > 1 - 1e-9, cos
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    proj = u @ d2
    np.testing.assert_allclose(proj, np.full(t, proj[0]), rtol=1e-7)


@SETTINGS
@given(m=grads_strategy, c=st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_cagrad_matches_reference(m: np.ndarray, c: float) -> None:
    t = m.shape[0]
    w = run_rule(mbk.CAGrad(t, c=c, rescale=False), gram_of(m)).numpy()
    d = w @ m
    d_ref = ref.cagrad(m, c=c, rescale=False)
    # Recover the inner weights w* = (w - 1/T) * ||g_w|| / k and compare objectives.
    g0 = m.mean(0)
    k = c * np.linalg.norm(g0)
    scale = float((m**2).sum(1).max())
    if k > 1e-6 * math.sqrt(scale):
        inner = np.clip(w - 1.0 / t, 0, None)
        inner = inner / inner.sum()
        best = ref.cagrad_objective(m, ref.cagrad_inner(m, c), c)
        assert ref.cagrad_objective(m, inner, c) <= best + 1e-8 * scale
    np.testing.assert_allclose(d, d_ref, rtol=1e-3, atol=1e-3 * math.sqrt(scale))


@SETTINGS
@given(m=grads_strategy, prefs_seed=st.integers(0, 100))
def test_aligned_mtl_matches_svd_reference(m: np.ndarray, prefs_seed: int) -> None:
    t = m.shape[0]
    prefs = np.random.default_rng(prefs_seed).uniform(0.1, 2, t).tolist()
    w = run_rule(mbk.AlignedMTL(t, preferences=prefs), gram_of(m)).numpy()
    d = ref.aligned_mtl(m, prefs)
    np.testing.assert_allclose(w @ m, d, rtol=1e-5, atol=1e-5 * np.abs(m).max() * sum(prefs))


@SETTINGS
@given(
    m=grads_strategy, prefs_seed=st.integers(0, 100), name=st.sampled_from(["upgrad", "dualproj"])
)
def test_dual_cone_rules_match_primal_projection(m: np.ndarray, prefs_seed: int, name: str):
    """With ``reg_eps = 0`` the dual QP on the Gram matrix gives the primal projection
    onto the dual cone (Quinton & Rey, Proposition 1), computed by SLSQP on the vectors;
    the update then conflicts with no task."""
    t = m.shape[0]
    prefs = np.random.default_rng(prefs_seed).uniform(0.1, 2, t).tolist()
    w = run_rule(mbk.make_rule(name, t, preferences=prefs, reg_eps=0.0), gram_of(m)).numpy()
    d = w @ m
    ref_fn = ref.upgrad if name == "upgrad" else ref.dualproj
    scale = float(np.linalg.norm(m, axis=1).max()) * sum(prefs)
    np.testing.assert_allclose(d, ref_fn(m, prefs), rtol=0, atol=1e-5 * scale)
    assert (m @ d >= -1e-8 * scale * np.linalg.norm(m, axis=1).max()).all()
    assert (w >= -1e-12).all()  # v >= u >= 0


def test_dual_cone_rules_without_conflict_are_linear_scalarisation() -> None:
    m = np.array([[1.0, 0.2, 0], [0.5, 1.0, 0.1], [0.1, 0.3, 2.0]])  # all inner products > 0
    for name in ("upgrad", "dualproj"):
        w = run_rule(mbk.make_rule(name, 3, preferences=[1, 2, 3]), gram_of(m))
        np.testing.assert_allclose(w, [1, 2, 3], rtol=1e-12)


@SETTINGS
@given(m=grads_strategy, prefs_seed=st.integers(0, 100))
def test_config_matches_vector_reference(m: np.ndarray, prefs_seed: int) -> None:
    t = m.shape[0]
    prefs = np.random.default_rng(prefs_seed).uniform(0.1, 2, t).tolist()
    w = run_rule(mbk.ConFIG(t, preferences=prefs), gram_of(m)).numpy()
    d = ref.config(m, prefs)
    np.testing.assert_allclose(w @ m, d, rtol=0, atol=1e-5 * combined_scale(m))
    # equal preference-scaled projections on the unit directions (when U b = p is solvable)
    if np.linalg.matrix_rank(m) == t:
        u = m / np.linalg.norm(m, axis=1, keepdims=True)
        proj = (u @ (w @ m)) / np.asarray(prefs)
        np.testing.assert_allclose(proj, np.full(t, proj[0]), rtol=1e-5)


def test_rlw_weights_are_a_seeded_softmax_of_its_draws() -> None:
    gram = torch.eye(4, dtype=torch.float64)
    rule = mbk.RLW(4, seed=9)
    seen = []
    for step in range(1, 6):
        w, state = rule.weights(gram, {}, torch.tensor(step))
        assert state == {}
        z = mbk.rules.rlw_normals(9, step, 4)
        torch.testing.assert_close(w, torch.softmax(z, 0), rtol=0, atol=0)
        assert (w > 0).all() and abs(float(w.sum()) - 1) < 1e-12
        seen.append(w)
    assert all(not torch.equal(a, b) for a, b in itertools.pairwise(seen))
    w_other, _ = mbk.RLW(4, seed=10).weights(gram, {}, torch.tensor(1))
    assert not torch.equal(w_other, seen[0])
    # a skipped task gets 0; the active ones share the softmax of their own draws
    active = torch.tensor([True, False, True, True])
    w, _ = rule.weights_subset(gram, {}, torch.tensor(1), active)
    z = mbk.rules.rlw_normals(9, 1, 4)[active]
    assert float(w[1]) == 0.0
    torch.testing.assert_close(w[active], torch.softmax(z, 0))


def test_rlw_stream_continues_after_a_checkpoint() -> None:
    """The stream position is the balancer's step: a restored balancer continues it."""
    bal = mbk.Balancer(mbk.RLW(3, seed=4))
    for _ in range(3):
        bal.step_weights(torch.eye(3, dtype=torch.float64))
    sd = copy.deepcopy(bal.state_dict())
    expected = [bal.step_weights(torch.eye(3, dtype=torch.float64)).clone() for _ in range(3)]
    bal2 = mbk.Balancer(mbk.RLW(3, seed=4))
    bal2.load_state_dict(sd)
    got = [bal2.step_weights(torch.eye(3, dtype=torch.float64)) for _ in range(3)]
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


# ------------------------------------------------------------ T = 2 closed forms
def _two(a: float, b: float, cos: float) -> np.ndarray:
    """Two gradients of norms a, b at the given cosine, in the plane."""
    return np.array([[a, 0.0], [b * cos, b * math.sqrt(1 - cos**2)]])


@pytest.mark.parametrize(("a", "b", "cos"), [(1, 1, 0.3), (1, 3, -0.5), (2, 0.5, 0.9), (1, 2, 0)])
def test_two_task_closed_forms(a: float, b: float, cos: float) -> None:
    m = _two(a, b, cos)
    gram = gram_of(m)
    g12 = a * b * cos

    # MGDA-UB: w_1 = (b^2 - g12) / (a^2 + b^2 - 2 g12), clipped to [0, 1]
    w1 = min(max((b * b - g12) / (a * a + b * b - 2 * g12), 0.0), 1.0)
    np.testing.assert_allclose(run_rule(mbk.MGDAUB(2), gram), [w1, 1 - w1], atol=1e-12)

    # IMTL-G: w = (b, a) / (a + b), i.e. d = ab/(a+b) (u_1 + u_2)
    np.testing.assert_allclose(run_rule(mbk.IMTLG(2), gram), [b / (a + b), a / (a + b)], 1e-9)

    # PCGrad: only on conflict, each projected off the other's original gradient
    expect = [1 - g12 / a**2, 1 - g12 / b**2] if g12 < 0 else [1, 1]
    np.testing.assert_allclose(run_rule(mbk.PCGrad(2), gram), expect, rtol=1e-12)

    # max-norm, beta = 0: w_t = max(a, b) / n_t
    top = max(a, b)
    np.testing.assert_allclose(run_rule(mbk.MaxNorm(2, beta=0.0), gram), [top / a, top / b], 1e-7)

    # MultiBalance, beta = 0, target 0: w = relax * a / n_t + 1 - relax
    w = run_rule(mbk.MultiBalanceRule(2, beta=0.0, relax=0.7, reference="target"), gram)
    np.testing.assert_allclose(w, [1.0, 0.7 * a / b + 0.3], rtol=1e-7)


@pytest.mark.parametrize("cos", [0.6, 0.0, -0.4])
def test_two_task_aligned_mtl_equal_norms(cos: float) -> None:
    # G = a^2 [[1, c], [c, 1]]: eigenvectors (1, 1), (1, -1) with a^2 (1 +- c); p = (1, 1)
    # lies on (1, 1), so w = sigma_min / (a sqrt(1 + c)) * p = sqrt(min(1-c, 1+c) / (1+c)).
    a = 1.7
    w = run_rule(mbk.AlignedMTL(2), gram_of(_two(a, a, cos)))
    expect = math.sqrt(min(1 - cos, 1 + cos) / (1 + cos))
    np.testing.assert_allclose(w, [expect, expect], rtol=1e-9)


@pytest.mark.parametrize("c", [0.0, 0.3, 0.8])
def test_two_task_cagrad_orthonormal(c: float) -> None:
    # g_1, g_2 orthonormal: by symmetry w* = (1/2, 1/2), ||g_w*|| = ||g_0|| = 1/sqrt(2),
    # so d = g_0 + c g_w* and each weight is (1 + c) / 2, divided by 1 + c^2.
    gram = torch.eye(2, dtype=torch.float64)
    w = run_rule(mbk.CAGrad(2, c=c), gram)
    np.testing.assert_allclose(w, [(1 + c) / 2 / (1 + c * c)] * 2, rtol=1e-8)
    w = run_rule(mbk.CAGrad(2, c=c, rescale=False), gram)
    np.testing.assert_allclose(w, [(1 + c) / 2] * 2, rtol=1e-8)


# -------------------------------------------------------------- the interface
@pytest.mark.parametrize("name", list(RULE_KWARGS))
def test_rules_are_pure_and_report_their_config(name: str) -> None:
    rule = mbk.make_rule(name, 3, **RULE_KWARGS[name])
    state = rule.init_state()
    before = {k: v.clone() for k, v in state.items()}
    gram = gram_of(make_grads(0, 3, "random"))
    w1, _ = rule.weights(gram, state, torch.tensor(1))
    w2, _ = rule.weights(gram, state, torch.tensor(1))
    assert torch.equal(w1, w2)
    for k, v in state.items():
        assert torch.equal(v, before[k])
    cfg = rule.config()
    assert cfg["num_tasks"] == 3
    assert type(mbk.make_rule(name, **cfg)).__name__ == type(rule).__name__
    assert name == rule.name and repr(rule).startswith(type(rule).__name__)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("linear", {"preferences": [1, 2]}, r"preferences must have num_tasks=3 entries"),
        (
            "linear",
            {"preferences": [1, -1, 0]},
            r"preferences must be finite numbers in \[0, inf\)",
        ),
        ("linear", {"preferences": [0, 0, 0]}, r"not all zero"),
        ("linear", {"preferences": [1, float("nan"), 0]}, r"preferences must be finite"),
        ("linear", {"preferences": "abc"}, r"preferences must be a sequence of 3 numbers"),
        ("max_norm", {"beta": 1.0}, r"beta must be in \[0, 1\)"),
        ("max_norm", {"eps": 0.0}, r"eps must be in \(0, 1\]"),
        ("pcgrad", {"seed": -1}, r"seed must be an integer in \[0, inf\)"),
        ("pcgrad", {"seed": 1.5}, r"seed must be an integer"),
        ("cagrad", {"c": 1.0}, r"c must be in \[0, 1\)"),
        ("cagrad", {"c": -0.1}, r"c must be in \[0, 1\)"),
        ("cagrad", {"rescale": 1}, r"rescale must be True or False"),
        ("aligned_mtl", {"rtol": 0.0}, r"rtol must be in \(0, 1\)"),
        ("aligned_mtl", {"preferences": [1]}, r"preferences must have num_tasks=3"),
        ("upgrad", {"reg_eps": -1e-3}, r"reg_eps must be in \[0, 1\]"),
        ("upgrad", {"norm_eps": float("nan")}, r"norm_eps must be in \[0, inf\)"),
        ("upgrad", {"preferences": [0, 0, 0]}, r"not all zero"),
        ("dualproj", {"reg_eps": 2.0}, r"reg_eps must be in \[0, 1\]"),
        ("dualproj", {"norm_eps": -1.0}, r"norm_eps must be in \[0, inf\)"),
        ("config", {"preferences": [1, 2]}, r"preferences must have num_tasks=3"),
        ("rlw", {"seed": -1}, r"seed must be an integer in \[0, inf\)"),
    ],
)
def test_invalid_hyperparameters_name_parameter_and_range(name, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        mbk.make_rule(name, 3, **kwargs)


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match=r"rule must be one of 'equal', 'linear'"):
        mbk.make_rule("sgd", 3)
    with pytest.raises(ValueError, match=r"num_tasks must be an integer in \[1, 12\]"):
        mbk.CAGrad(13)
    with pytest.raises(ValueError, match=r"num_tasks must be an integer in \[1, inf\)"):
        mbk.make_rule("mgda_ub", 0)
    for name in ("upgrad", "dualproj"):
        with pytest.raises(ValueError, match=r"num_tasks must be an integer in \[1, 12\]"):
            mbk.make_rule(name, 13)
