"""Nash-MTL, FairGrad, GradVac and DB-MTL on the Gram matrix against float64 references on
the gradient vectors (tests/_rules_reference.py), and the solver's optimality conditions.

Gradients come from tests/test_rules_properties.py's strategy (random over six orders of
magnitude, rank-deficient, near-parallel). Nash-MTL and FairGrad have a solution only
when no non-negative combination of the gradients vanishes; the cases where one does
(possible for rank-deficient gradients) are tested separately for finiteness.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mbkernels as mbk

from . import _rules_reference as ref
from .test_rules_properties import SETTINGS, combined_scale, grads_strategy, gram_of, run_rule


@pytest.mark.parametrize(("name", "p"), [("nash_mtl", 1.0), ("fairgrad", 0.5), ("fairgrad", 2.0)])
@SETTINGS
@given(m=grads_strategy)
def test_power_rules_solve_their_system(name: str, p: float, m: np.ndarray) -> None:
    """``(G w)_t w_t^p = 1`` for every task, ``w > 0``, and the update equals SciPy's
    least-squares solution on the vectors."""
    if not ref.power_system_solvable(m):
        return
    kwargs = {"alpha": 1.0 / p} if name == "fairgrad" else {}
    gram = gram_of(m)
    w = run_rule(mbk.make_rule(name, m.shape[0], **kwargs), gram).numpy()
    assert (w > 0).all()
    # the ridge (1e-14 of each diagonal entry) and rounding bound the residual
    np.testing.assert_allclose((gram.numpy() @ w) * w**p, 1.0, rtol=0, atol=1e-7)
    d_ref = ref.power_system(m, p) @ m
    np.testing.assert_allclose(w @ m, d_ref, rtol=0, atol=1e-6 * np.abs(d_ref).max())


@pytest.mark.parametrize("name", ["nash_mtl", "fairgrad"])
@SETTINGS
@given(m=grads_strategy)
def test_power_rules_finite_without_a_solution(name: str, m: np.ndarray) -> None:
    """Also when a non-negative combination of the gradients vanishes (no solution) or a
    gradient is zero (weight 0), the weights are finite and >= 0."""
    m = np.vstack([m, -m[:1], np.zeros((1, m.shape[1]))])
    w = run_rule(mbk.make_rule(name, m.shape[0]), gram_of(m))
    assert torch.isfinite(w).all() and (w >= 0).all() and w[-1] == 0


def test_nash_update_norm_and_clipping() -> None:
    """``||d||^2 = w^T G w = T`` whatever the scale; ``max_norm`` clips it."""
    rng = np.random.default_rng(0)
    for t in (2, 5, 8):
        m = rng.standard_normal((t, 11)) * 1e-3
        w = run_rule(mbk.NashMTL(t), gram_of(m)).numpy()
        assert np.linalg.norm(w @ m) == pytest.approx(np.sqrt(t), rel=1e-9)
        w = run_rule(mbk.NashMTL(t, max_norm=1.0), gram_of(m)).numpy()
        assert np.linalg.norm(w @ m) == pytest.approx(1.0, rel=1e-9)
        np.testing.assert_allclose(w @ m, ref.nash_mtl(m, max_norm=1.0), rtol=1e-7, atol=1e-9)


def test_nash_two_orthogonal_tasks_closed_form() -> None:
    """Orthogonal gradients: ``w_t = 1 / ||g_t||``; FairGrad: ``w_t = ||g_t||^(-2/(1+p))``
    (``p = 1/alpha``)."""
    gram = torch.diag(torch.tensor([4.0, 0.25], dtype=torch.float64))
    np.testing.assert_allclose(run_rule(mbk.NashMTL(2), gram), [0.5, 2.0], rtol=1e-12)
    np.testing.assert_allclose(
        run_rule(mbk.FairGrad(2, alpha=2.0), gram),
        [4.0 ** (-1 / 1.5), 0.25 ** (-1 / 1.5)],
        rtol=1e-12,
    )


@SETTINGS
@given(m=grads_strategy, seed=st.integers(0, 50), beta=st.sampled_from([0.01, 0.5, 1.0]))
def test_gradvac_matches_vector_algorithm(m: np.ndarray, seed: int, beta: float) -> None:
    """Three steps: the update and the cosine targets equal the per-pair corrections on the
    vectors (same order, same relative eps). Skipped for gradients at cosine +-1 to 1e-6:
    there ``sqrt(1 - phi^2)`` turns rounding into differences of order 1e-4."""
    t = m.shape[0]
    norms = np.linalg.norm(m, axis=1)
    if (norms == 0).any() or (
        np.abs((m @ m.T) / np.outer(norms, norms)) - np.eye(t) > 1 - 1e-6
    ).any():
        return
    rule = mbk.GradVac(t, beta=beta, seed=seed)
    state = rule.init_state()
    phi = np.zeros((t, t))
    gram = gram_of(m)
    for step in (1, 2, 3):
        w, state = rule.weights(gram, state, torch.tensor(step))
        d, phi = ref.gradvac(m, phi, beta=beta, seed=seed, step=step)
        np.testing.assert_allclose(w.numpy() @ m, d, rtol=0, atol=1e-6 * combined_scale(m))
        np.testing.assert_allclose(state["phi_hat"].numpy(), phi, rtol=0, atol=1e-6)


@SETTINGS
@given(m=grads_strategy, beta=st.sampled_from([0.0, 0.5, 0.9]), sigma=st.sampled_from([0.0, 0.5]))
def test_db_mtl_matches_reference(m: np.ndarray, beta: float, sigma: float) -> None:
    t = m.shape[0]
    rule = mbk.DBMTL(t, beta=beta, sigma=sigma)
    state = rule.init_state()
    ema = np.zeros(t)
    rng = np.random.default_rng(0)
    for step in (1, 2, 3):
        mk = m * rng.uniform(0.5, 2.0, size=(t, 1))  # norms change from step to step
        w, state = rule.weights(gram_of(mk), state, torch.tensor(step))
        d, ema = ref.db_mtl(mk, ema, step, beta=beta, sigma=sigma)
        np.testing.assert_allclose(w.numpy() @ mk, d, rtol=1e-5, atol=1e-6 * combined_scale(mk))
        ema = state["ema"].double().numpy()  # the rule stores float32


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("nash_mtl", {"max_norm": -1.0}, r"max_norm must be in \[0, inf\]"),
        ("fairgrad", {"alpha": 0.0}, r"alpha must be in \(0, 1000\]"),
        ("fairgrad", {"alpha": float("nan")}, r"alpha must be in"),
        ("gradvac", {"beta": 1.5}, r"beta must be in \[0, 1\]"),
        ("gradvac", {"eps": -1.0}, r"eps must be in \[0, 1\]"),
        ("gradvac", {"seed": -1}, r"seed must be an integer in \[0, inf\)"),
        ("db_mtl", {"beta": 1.0}, r"beta must be in \[0, 1\)"),
        ("db_mtl", {"sigma": -0.5}, r"sigma must be in \[0, 10\]"),
    ],
)
def test_invalid_hyperparameters(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mbk.make_rule(name, 3, **kwargs)


def test_gradvac_state_out_of_range_is_refused_and_keeps_state() -> None:
    bal = mbk.Balancer(mbk.GradVac(2))
    sd = bal.state_dict()
    before = bal.phi_hat.clone()
    sd["phi_hat"] = torch.full((2, 2), 1.5)
    with pytest.raises(ValueError, match=r"'phi_hat' must be in \[-1, 1\]"):
        bal.load_state_dict(sd)
    assert torch.equal(bal.phi_hat, before)
