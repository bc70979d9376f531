"""Non-finite gradient policies and the all-zero-gradient task, against float64 references."""

from __future__ import annotations

import pytest
import torch

import mbkernels as mbk

from .helpers import multibalance_reference

T, SHAPE = 3, (5, 4)


def _backward(bal: mbk.Balancer, grads: list[torch.Tensor]) -> torch.Tensor:
    """Run the fork with task t receiving exactly ``grads[t]``; return dL/dz."""
    z = torch.zeros(SHAPE, dtype=grads[0].dtype, requires_grad=True)
    outs = bal(z)
    sum((o * g).sum() for o, g in zip(outs, grads)).backward()
    assert z.grad is not None
    return z.grad


def _grads(*scales: float) -> list[torch.Tensor]:
    return [s * torch.randn(SHAPE) for s in scales]


def _state(bal: mbk.Balancer) -> dict[str, torch.Tensor]:
    """The balancing state (rule state, step, weights), without the refusal counter that
    a refused step increments (tests/test_state_safety.py covers it)."""
    return {
        k: v.clone()
        for k, v in bal.state_dict().items()
        if isinstance(v, torch.Tensor) and k != "refused_streak"
    }


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -float("inf")])
def test_skip_update_keeps_state_and_passes_the_nonfinite_gradient_on(bad: float) -> None:
    bal = mbk.MultiBalance(T, beta=0.8)
    twin = mbk.MultiBalance(T, beta=0.8)  # sees only the finite steps
    first, third = _grads(1.0, 3.0, 0.2), _grads(2.0, 1.0, 0.5)
    _backward(bal, first)
    _backward(twin, first)
    before = _state(bal)
    broken = _grads(1.0, 1.0, 1.0)
    broken[1][2, 3] = bad
    out = _backward(bal, broken)
    after = _state(bal)
    assert all(torch.equal(before[k], after[k]) for k in before)  # EMA, step, weights
    assert not bool(bal.stats.finite)
    # The non-finite value flows on (a GradScaler must see it), the rest uses the last weights.
    assert not torch.isfinite(out).all()
    w = before["weights"]
    mask = torch.ones(SHAPE, dtype=torch.bool)
    mask[2, 3] = False
    expect = sum(w_t * g for w_t, g in zip(w, broken))
    torch.testing.assert_close(out[mask], expect[mask])
    # The next finite step continues as if the broken step never happened.
    torch.testing.assert_close(_backward(bal, third), _backward(twin, third), rtol=0, atol=0)
    assert torch.equal(bal.ema, twin.ema) and int(bal.step) == int(twin.step) == 2


@pytest.mark.parametrize("reference", ["target", "mean", "max"])
@pytest.mark.parametrize("dropped", [0, 1])
def test_skip_task_balances_the_others_among_themselves(reference: str, dropped: int) -> None:
    beta, relax = 0.8, 0.7
    bal = mbk.MultiBalance(T, beta=beta, relax=relax, reference=reference, nonfinite="skip_task")
    first = _grads(1.0, 4.0, 0.3)
    _backward(bal, first)
    ema1 = bal.ema.clone()
    grads = _grads(2.0, 0.5, 1.5)
    grads[dropped][0, 0] = float("nan")
    out = _backward(bal, grads)
    assert torch.isfinite(out).all()
    keep = [t for t in range(T) if t != dropped]
    # Reference: the MultiBalance formula on the kept tasks only (float64), step 2. With
    # the target (task 0) dropped, the reference magnitude is its held EMA, bias-corrected
    # for the one update it has had (not for the global step 2).
    g64 = [grads[t].double() for t in keep]
    norms = torch.stack([g.norm() for g in g64])
    ema = ema1.double().clone()
    ema[keep] = beta * ema[keep] + (1 - beta) * norms
    updates = torch.full((T,), 2.0, dtype=torch.float64)
    updates[dropped] = 1.0
    m = ema / (1 - beta**updates)
    ref = {"target": m[0], "mean": m[keep].mean(), "max": m[keep].max()}[reference]
    w = relax * ref / (m + 1e-8) + (1 - relax)
    w[dropped] = 0.0
    expect = sum(w[t] * grads[t].double() for t in keep)
    torch.testing.assert_close(out.double(), expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bal.weights.double(), w, rtol=1e-6, atol=0)
    torch.testing.assert_close(bal.ema.double(), ema, rtol=1e-6, atol=0)
    assert bal.ema[dropped] == ema1[dropped] and int(bal.step) == 2
    assert bal.count.tolist() == updates.long().tolist()


def test_skip_task_with_every_task_broken_skips_the_update() -> None:
    bal = mbk.MultiBalance(T, nonfinite="skip_task")
    _backward(bal, _grads(1.0, 2.0, 3.0))
    before = _state(bal)
    out = _backward(bal, [torch.full(SHAPE, float("inf")) for _ in range(T)])
    after = _state(bal)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.isfinite(out).all()


def test_raise_names_the_task_and_changes_nothing() -> None:
    bal = mbk.MultiBalance(T, nonfinite="raise")
    _backward(bal, _grads(1.0, 2.0, 3.0))
    before = _state(bal)
    grads = _grads(1.0, 2.0, 3.0)
    grads[2][1, 1] = float("inf")
    with pytest.raises(mbk.NonFiniteGradientError, match=r"task index\(es\) \[2\]") as info:
        _backward(bal, grads)
    assert isinstance(info.value, FloatingPointError) and info.value.tasks == [2]
    after = _state(bal)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_invalid_policy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="nonfinite must be one of 'skip_update', 'skip_task'"):
        mbk.MultiBalance(T, nonfinite="ignore")


@pytest.mark.parametrize("reference", ["target", "mean", "max"])
@pytest.mark.parametrize("zero_task", [0, 2])
def test_all_zero_gradient_task_gets_a_finite_weight(reference: str, zero_task: int) -> None:
    """A task with no labels in the batch: its gradient is exactly 0, from the first step
    (EMA 0) and after earlier non-zero steps (EMA decaying towards 0)."""
    beta, relax = 0.5, 0.7
    bal = mbk.MultiBalance(T, beta=beta, relax=relax, reference=reference)
    ema = torch.zeros(T, dtype=torch.float64)
    for step in range(1, 8):
        grads = _grads(1.0, 2.0, 0.5)
        if step == 1 or step > 3:
            grads[zero_task] = torch.zeros(SHAPE)
        out = _backward(bal, grads)
        expect, ema, w = multibalance_reference(
            grads, ema, step, beta=beta, relax=relax, reference=reference, target=0
        )
        assert torch.isfinite(bal.weights).all() and torch.isfinite(out).all()
        torch.testing.assert_close(bal.weights.double(), w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.double(), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", mbk.NONFINITE_POLICIES)
@pytest.mark.parametrize("rule_name", sorted(mbk.rules.RULES))
def test_every_rule_survives_a_nan_task_under_every_policy(rule_name: str, policy: str) -> None:
    """Rules never see inf/NaN (some factorise the Gram matrix and would raise)."""
    bal = mbk.Balancer(mbk.rules.make_rule(rule_name, T), nonfinite=policy)
    _backward(bal, _grads(1.0, 10.0, 100.0))
    before = _state(bal)
    grads = _grads(1.0, 10.0, 100.0)
    grads[1][0, 0] = float("nan")
    if policy == "raise":
        with pytest.raises(mbk.NonFiniteGradientError):
            _backward(bal, grads)
    else:
        out = _backward(bal, grads)
        assert torch.isfinite(bal.weights).all()
        if policy == "skip_task":
            assert torch.isfinite(out).all() and bal.weights[1] == 0 and int(bal.step) == 2
    if policy != "skip_task":
        after = _state(bal)
        assert all(torch.equal(before[k], after[k]) for k in before)
    out = _backward(bal, _grads(1.0, 10.0, 100.0))  # and training goes on
    assert torch.isfinite(out).all() and torch.isfinite(bal.weights).all()


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("where", range(4))
def test_all_finite_checks_every_element_of_every_tensor(bad: float, where: int) -> None:
    from mbkernels.nonfinite import all_finite

    tensors = [
        torch.randn(3, 3, dtype=torch.float64),
        torch.randn(4),
        torch.tensor(2.5),  # 0-d
        torch.randn(2, 5, dtype=torch.float16),
    ]
    assert bool(all_finite(*tensors))
    flat = tensors[where].view(-1)
    flat[flat.numel() - 1] = bad
    assert not bool(all_finite(*tensors))
    # integer and bool tensors are finite; empty tensors add nothing
    ints = (torch.arange(3), torch.ones(2, dtype=torch.bool), torch.empty(0))
    assert bool(all_finite(torch.zeros(2), *ints))
    assert all_finite(torch.zeros(2)).dim() == 0
