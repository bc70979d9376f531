"""mbviz problems and models: analytic toy front, synthetic optimum, MMoE balancing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mbkernels.rules import Equal, MultiBalanceRule
from mbviz.problems import QuadraticToy, SyntheticProblem
from mbviz.runner import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scale_ratio", [1.0, 10.0])
def test_toy_analytic_front_matches_optimised_points(scale_ratio: float) -> None:
    toy = QuadraticToy(scale_ratio=scale_ratio)
    rng = np.random.default_rng(0)
    for lam in np.linspace(0.0, 1.0, 9):

        def obj(x, lam=lam):
            return float(lam * toy.losses(x)[0] + (1 - lam) * toy.losses(x)[1])

        found = minimize(
            obj,
            rng.normal(size=2) * 3,
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 5000},
        ).x
        np.testing.assert_allclose(toy.pareto_point(lam), found, atol=1e-5)


def test_toy_front_points_are_pareto_stationary() -> None:
    toy = QuadraticToy(scale_ratio=3.0)
    for x in toy.pareto_set(11)[1:-1]:
        g = toy.grads(x)
        cos = g[0] @ g[1] / (np.linalg.norm(g[0]) * np.linalg.norm(g[1]))
        assert cos == pytest.approx(-1.0, abs=1e-9)  # anti-parallel: no common descent
    ends = toy.pareto_set(2)
    np.testing.assert_allclose(ends[0], toy.centers[1], atol=1e-12)
    np.testing.assert_allclose(ends[1], toy.centers[0], atol=1e-12)


def test_toy_trajectories_end_on_the_front() -> None:
    toy = QuadraticToy(scale_ratio=4.0)
    eq = toy.trajectory("equal", (0.0, 2.0), steps=600, lr=0.05)
    end = eq[["x", "y"]].to_numpy()[-1]
    np.testing.assert_allclose(end, toy.pareto_point(0.5), atol=1e-4)
    mb = toy.trajectory("multibalance", (0.0, 2.0), steps=600, lr=0.05)
    assert toy.distance_to_pareto_set(mb[["x", "y"]].to_numpy()[-1]) < 2e-3
    assert set(mb.columns) >= {"rule", "step", "x", "y", "f1", "f2", "w1", "w2", "cos"}


def test_toy_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scale_ratio"):
        QuadraticToy(scale_ratio=0.0)
    with pytest.raises(ValueError, match="steps"):
        QuadraticToy().trajectory("equal", steps=0)
    with pytest.raises(ValueError, match="rule"):
        QuadraticToy().trajectory("nope")


def test_synthetic_knobs() -> None:
    p = SyntheticProblem(num_tasks=3, angle=120.0, scale_ratio=100.0)
    d = p.directions.double()
    np.testing.assert_allclose(d.norm(dim=1).numpy(), 1.0, atol=1e-6)
    assert float(d[0] @ d[-1]) == pytest.approx(math.cos(math.radians(120)), abs=1e-6)
    assert float(d[0] @ d[1]) == pytest.approx(math.cos(math.radians(60)), abs=1e-6)
    assert p.loss_scales == pytest.approx((1.0, 10.0, 100.0))
    with pytest.raises(ValueError, match="angle"):
        SyntheticProblem(angle=200.0)
    with pytest.raises(ValueError, match="noise"):
        SyntheticProblem(noise=-1.0)


def test_synthetic_single_task_reaches_known_optimum() -> None:
    p = SyntheticProblem(num_tasks=2, angle=90.0, scale_ratio=10.0, noise=0.3)
    r = train(p, steps=300, batch_size=256, lr=0.05, preference=(0.0, 1.0), progress=False)
    assert r.test["task2"]["rmse"] == pytest.approx(p.optimal_rmse()["task2"], rel=0.05)
    # one shared feature cannot serve both orthogonal tasks: task 1 stays far from optimal
    assert r.test["task1"]["rmse"] > 2 * p.noise


def _mmoe_grads(model, problem, batch, weights=None):
    model.zero_grad()
    losses = problem.task_losses(model(*batch.inputs), batch)
    total = sum(losses) if weights is None else sum(w * l for w, l in zip(weights, losses))
    total.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, losses


@pytest.mark.parametrize("arch", ["mmoe", "mmoe_experts", "shared_bottom"])
def test_equal_rule_through_balancer_is_plain_sum(arch: str, movielens_small) -> None:
    torch.manual_seed(0)
    model = movielens_small.make_model(arch)
    batch = movielens_small.sample_batch(64, torch.Generator().manual_seed(1))
    plain, _ = _mmoe_grads(model, movielens_small, batch)
    model.attach(Equal(3))
    balanced, _ = _mmoe_grads(model, movielens_small, batch)
    assert plain.keys() == balanced.keys()
    for k in plain:
        torch.testing.assert_close(balanced[k], plain[k], rtol=1e-5, atol=1e-7)


def test_mmoe_mixture_balancing_matches_per_task_reference(movielens_small) -> None:
    """Each task's mixture gradient is scaled by w_t from the norms of dL_t/dh_t."""
    torch.manual_seed(0)
    model = movielens_small.make_model("mmoe").double()
    batch = movielens_small.sample_batch(64, torch.Generator().manual_seed(2))
    batch = type(batch)(
        (batch.inputs[0], batch.inputs[1], batch.inputs[2].double()),
        batch.targets.double(),
        batch.mask,
    )
    relax = 0.7
    # reference: per-task gradients on the mixtures by separate autograd.grad calls
    x = model.embed(*batch.inputs)
    experts = torch.stack([e(x) for e in model.experts], dim=1)
    mixes = [torch.einsum("bk,bkd->bd", torch.softmax(g(x), -1), experts) for g in model.gates]
    losses = movielens_small.task_losses(
        [t(h).squeeze(-1) for t, h in zip(model.towers, mixes)], batch
    )
    norms = torch.stack(
        [torch.autograd.grad(l, h, retain_graph=True)[0].norm() for l, h in zip(losses, mixes)]
    )
    w_ref = relax * norms[0] / norms + (1 - relax)  # first step: bias-corrected EMA = norm
    shared_ref = torch.autograd.grad(
        sum(w * l for w, l in zip(w_ref, losses)),
        list(model.experts.parameters()) + list(model.gates.parameters()),
        retain_graph=True,
    )
    tower_ref = torch.autograd.grad(sum(losses), list(model.towers.parameters()))
    model.attach(MultiBalanceRule(3, relax=relax, reference="target", target=0))
    model.zero_grad()
    sum(movielens_small.task_losses(model(*batch.inputs), batch)).backward()
    torch.testing.assert_close(model.stats.weights.double(), w_ref, rtol=1e-5, atol=1e-7)
    got = [p.grad for p in list(model.experts.parameters()) + list(model.gates.parameters())]
    for g, r in zip(got, shared_ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-8)
    for g, r in zip((p.grad for p in model.towers.parameters()), tower_ref):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-10)


def test_parameter_level_equal_matches_representation_level() -> None:
    p = SyntheticProblem(angle=60.0, noise=0.2)
    a = train(p, rule="equal", steps=20, batch_size=32, progress=False)
    b = train(p, rule="equal", level="parameter", steps=20, batch_size=32, progress=False)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-4)
    # the norms differ: representation gradients vs shared-parameter gradients
    assert not np.allclose(a.history["norm"], b.history["norm"])


def test_taskwise_balancer_unused_output_and_bad_input() -> None:
    from mbviz.taskwise import TaskwiseBalancer

    bal = TaskwiseBalancer(MultiBalanceRule(3, relax=1.0, reference="target", target=0))
    reps = [torch.randn(4, 5, requires_grad=True) for _ in range(3)]
    outs = bal(*reps)
    (outs[0].sum() + 3 * outs[2].sum()).backward()  # task 2 (index 1) unused
    w = bal.stats.weights
    assert torch.isfinite(w).all() and w[0] == pytest.approx(1.0) and w[2] == pytest.approx(1 / 3)
    torch.testing.assert_close(reps[2].grad, torch.full((4, 5), 3.0) * w[2])
    assert reps[1].grad is None
    with pytest.raises(ValueError, match="num_tasks=3"):
        bal(*reps[:2])
    with pytest.raises(ValueError, match="one shape"):
        bal(reps[0], reps[1], torch.randn(2, 5))
