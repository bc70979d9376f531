"""Parameter-level baselines: per-task gradients equal separate torch.autograd.grad
calls; MetaBalance per the paper's formula against a float64 reference; MGDA's
min-norm certificate; towers get their own gradients; state and validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mbkernels.param_level import MetaBalanceParams, MGDAParams

from . import _rules_reference as ref
from .helpers import ToyMultiTask

T = 3


def _losses(model: ToyMultiTask, x, y):
    z = model.bottom(x)
    return model.task_losses([z] * T, y)


@pytest.mark.parametrize("cls", [MetaBalanceParams, MGDAParams])
def test_task_gradients_equal_separate_autograd_grad_calls(cls) -> None:
    model = ToyMultiTask(T)
    shared = list(model.bottom.parameters())
    x, y = torch.randn(8, 6), torch.randn(8, T)
    bal = cls(shared, T)
    got = bal.task_gradients(_losses(model, x, y))
    losses = _losses(model, x, y)
    for t in range(T):
        expect = torch.autograd.grad(losses[t], shared, retain_graph=True)
        for a, b in zip(got[t], expect):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in shared)  # left as found


def _metabalance_reference(grads64, ema, *, target, beta, relax, eps=1e-8):
    """Straight from the paper: per parameter, EMA of every task's gradient norm,
    auxiliary gradients pulled to the target's magnitude."""
    combined = []
    new_ema = ema.copy()
    for i in range(len(grads64[0])):
        norms = np.array([np.linalg.norm(grads64[t][i]) for t in range(len(grads64))])
        new_ema[i] = beta * ema[i] + (1 - beta) * norms
        total = grads64[target][i].copy()
        for t in range(len(grads64)):
            if t == target:
                continue
            m_aux, m_tgt = new_ema[i, t], new_ema[i, target]
            factor = relax * m_tgt / (m_aux + eps) + (1 - relax) if m_aux > 0 else 1.0
            total += factor * grads64[t][i]
        combined.append(total)
    return combined, new_ema


def test_metabalance_params_matches_float64_reference_over_steps() -> None:
    model = ToyMultiTask(T)
    model64 = copy.deepcopy(model).double()
    shared = list(model.bottom.parameters())
    shared64 = list(model64.bottom.parameters())
    bal = MetaBalanceParams(shared, T, target=1, beta=0.8, relax=0.6)
    ema = np.zeros((len(shared), T))
    for step in range(1, 5):
        x, y = torch.randn(8, 6), torch.randn(8, T)
        model.zero_grad()
        bal.backward(_losses(model, x, y))
        losses64 = _losses(model64, x.double(), y.double())
        grads64 = [
            [g.numpy() for g in torch.autograd.grad(loss, shared64, retain_graph=True)]
            for loss in losses64
        ]
        combined, ema = _metabalance_reference(grads64, ema, target=1, beta=0.8, relax=0.6)
        for p, c in zip(shared, combined):
            np.testing.assert_allclose(p.grad.double().numpy(), c, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(bal.stats.state["ema"].numpy(), ema, rtol=1e-5)
        assert int(bal.stats.step) == step and bal.stats.weights.shape == (len(shared), T)
        # towers: each its own task's gradient, unweighted
        for t, tower in enumerate(model.towers):
            expect = torch.autograd.grad(losses64[t], list(model64.towers[t].parameters()))
            for p, e in zip(tower.parameters(), expect):
                np.testing.assert_allclose(p.grad.double().numpy(), e.numpy(), rtol=1e-4)


def test_relax_zero_is_the_plain_sum_and_existing_grads_accumulate() -> None:
    model = ToyMultiTask(T)
    shared = list(model.bottom.parameters())
    x, y = torch.randn(8, 6), torch.randn(8, T)
    sum(_losses(model, x, y)).backward()
    plain = [p.grad.clone() for p in model.parameters()]
    # .grad already holds the plain sum; a second, relax=0 backward adds it again
    MetaBalanceParams(shared, T, relax=0.0).backward(_losses(model, x, y))
    for p, g in zip(model.parameters(), plain):
        torch.testing.assert_close(p.grad, 2 * g, rtol=1e-5, atol=1e-7)


def test_mgda_params_is_the_min_norm_point_of_the_parameter_gradients() -> None:
    model = ToyMultiTask(T)
    shared = list(model.bottom.parameters())
    x, y = torch.randn(8, 6), torch.randn(8, T)
    bal = MGDAParams(shared, T)
    grads = bal.task_gradients(_losses(model, x, y))
    m = np.stack([torch.cat([g.reshape(-1) for g in task]).double().numpy() for task in grads])
    model.zero_grad()
    bal.backward(_losses(model, x, y))
    d = torch.cat([p.grad.reshape(-1) for p in shared]).double().numpy()
    w = bal.stats.weights[0].numpy()
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-9
    np.testing.assert_allclose(d, w @ m, rtol=1e-5, atol=1e-7)
    scale = (m**2).sum(1).max()
    assert (m @ d >= d @ d - 1e-5 * scale).all()  # min-norm certificate: no task conflicts
    d_ref = ref.mgda(m)
    assert d @ d <= d_ref @ d_ref * (1 + 1e-5) + 1e-12


def test_metabalance_params_state_round_trip_continues_identically() -> None:
    batches = [(torch.randn(8, 6), torch.randn(8, T)) for _ in range(5)]

    def run(model, bal, data):
        out = []
        for x, y in data:
            model.zero_grad()
            bal.backward(_losses(model, x, y))
            out.append([p.grad.clone() for p in model.bottom.parameters()])
        return out

    model = ToyMultiTask(T)
    bal = MetaBalanceParams(model.bottom.parameters(), T, beta=0.7)
    run(model, bal, batches[:2])
    sd = copy.deepcopy(bal.state_dict())
    expected = run(model, bal, batches[2:])
    bal2 = MetaBalanceParams(model.bottom.parameters(), T, beta=0.7)
    bal2.load_state_dict(sd)
    assert int(bal2.step) == 2
    for a, b in zip(expected, run(model, bal2, batches[2:])):
        for u, v in zip(a, b):
            assert torch.equal(u, v)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_tasks": 0}, r"num_tasks must be an integer in \[1, inf\)"),
        ({"target": 3}, r"target must be an integer in \[0, 2\]"),
        ({"beta": 1.0}, r"beta must be in \[0, 1\)"),
        ({"relax": 1.2}, r"relax must be in \[0, 1\]"),
        ({"eps": 0.0}, r"eps must be in \(0, 1\]"),
    ],
)
def test_invalid_hyperparameters(kwargs, match) -> None:
    model = ToyMultiTask(T)
    args = {"num_tasks": T, **kwargs}
    with pytest.raises(ValueError, match=match):
        MetaBalanceParams(model.bottom.parameters(), **args)


def test_invalid_inputs_and_states_change_nothing() -> None:
    model = ToyMultiTask(T)
    with pytest.raises(ValueError, match="shared_params must contain at least one tensor"):
        MGDAParams([], T)
    with pytest.raises(ValueError, match=r"shared_params\[0\] must be a leaf tensor"):
        MGDAParams([torch.zeros(3)], T)
    p = next(model.bottom.parameters())
    with pytest.raises(ValueError, match="must not contain the same tensor twice"):
        MGDAParams([p, p], T)

    bal = MetaBalanceParams(model.bottom.parameters(), T)
    x, y = torch.randn(8, 6), torch.randn(8, T)
    bal.backward(_losses(model, x, y))
    before = copy.deepcopy(bal.state_dict())
    with pytest.raises(ValueError, match=r"losses must be a sequence of num_tasks=3"):
        bal.backward(_losses(model, x, y)[:2])
    with pytest.raises(ValueError, match=r"losses\[1\] must be a scalar tensor"):
        losses = _losses(model, x, y)
        bal.backward([losses[0], torch.ones(2, requires_grad=True), losses[2]])

    other = MetaBalanceParams(ToyMultiTask(4).bottom.parameters(), 4).state_dict()
    with pytest.raises(ValueError, match=r"saved for num_tasks=4, but this balancer has"):
        bal.load_state_dict(other)
    bad = copy.deepcopy(before)
    bad["ema"] = bad["ema"][:1]
    with pytest.raises(ValueError, match=r"state_dict\['ema'\] has shape"):
        bal.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["ema"][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"must be finite"):
        bal.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"saved by 'mgda_params'"):
        bal.load_state_dict(MGDAParams(model.bottom.parameters(), T).state_dict())
    after = bal.state_dict()
    assert torch.equal(after["ema"], before["ema"]) and torch.equal(after["step"], before["step"])


def test_metabalance_params_keeps_its_state_on_the_parameters_device() -> None:
    """On the ``meta`` device (shapes and devices only, any machine): a state made on the
    CPU while the parameters and their gradients live elsewhere (a GPU) cannot be added to
    their norms. The EMA is created, updated and loaded on the parameters' device."""
    torch.manual_seed(0)
    bottom = torch.nn.Linear(6, 4, device="meta")
    towers = [torch.nn.Linear(4, 1, device="meta") for _ in range(T)]
    bal = MetaBalanceParams(bottom.parameters(), T, target=1)
    assert bal.ema.device.type == "meta"
    for _ in range(2):
        z = bottom(torch.empty(8, 6, device="meta"))
        bal.backward([tower(z).pow(2).mean() for tower in towers])
    assert bal.ema.device.type == "meta" and bal.ema.shape == (2, T)
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in bottom.parameters())
    stats = bal.stats
    assert stats is not None and stats.weights.device.type == "meta"
    cpu = MetaBalanceParams(torch.nn.Linear(6, 4).parameters(), T, target=1)
    bal.load_state_dict(cpu.state_dict())  # a state saved on another device
    assert bal.ema.device.type == "meta"


def test_rule_params_weights_every_shared_parameter_by_the_balancer_step() -> None:
    import mbkernels as mbk
    from mbkernels.param_level import RuleParams

    model = ToyMultiTask(T)
    shared = list(model.bottom.parameters())
    x, y = torch.randn(8, 6), torch.randn(8, T)
    rule_bal = mbk.Balancer(mbk.MultiBalanceRule(T, relax=1.0, reference="max"))
    bal = RuleParams(shared, rule_bal)
    grads = bal.task_gradients(_losses(model, x, y))
    flat = torch.stack([torch.cat([g.reshape(-1).double() for g in task]) for task in grads])
    expected_w = mbk.Balancer(mbk.MultiBalanceRule(T, relax=1.0, reference="max")).step_weights(
        flat @ flat.T
    )
    for p in model.parameters():
        p.grad = None
    bal.backward(_losses(model, x, y))
    assert rule_bal.stats is not None and int(rule_bal.step) == 1
    torch.testing.assert_close(rule_bal.stats.weights, expected_w)
    for i, p in enumerate(shared):
        want = sum(expected_w[t].float() * grads[t][i] for t in range(T))
        torch.testing.assert_close(p.grad, want)
    # the towers get their own task's gradient, unweighted
    tower_grads = [p.grad for p in model.towers.parameters()]
    assert all(g is not None for g in tower_grads)


def test_rule_params_needs_a_balancer() -> None:
    from mbkernels.param_level import RuleParams

    model = ToyMultiTask(T)
    with pytest.raises(ValueError, match="balancer must be a mbkernels.Balancer"):
        RuleParams(model.bottom.parameters(), "multibalance")  # type: ignore[arg-type]
