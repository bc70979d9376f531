"""One representation per task: :func:`mbkernels.fork.fork_each` hands the T gradients to
one callback, and :meth:`mbkernels.Balancer.weigh_each` weights each one separately, with
the same pass 1 (float64 range fallback included) and state handling as the fork."""

from __future__ import annotations

import pytest
import torch

import mbkernels as mbk
from mbkernels.fork import fork, fork_each

T = 3


def test_fork_each_returns_its_inputs_and_routes_each_gradient() -> None:
    reps = [torch.randn(4, 5, requires_grad=True) for _ in range(T)]
    seen: list[list[torch.Tensor | None]] = []

    def combine(grads):
        seen.append(list(grads))
        return [None if g is None else 2.0 * g for g in grads]

    outs = mbk.fork_each(reps, combine)
    for r, o in zip(reps, outs):
        assert torch.equal(r, o)
    (outs[0].sum() + 3.0 * outs[2].sum()).backward()
    assert len(seen) == 1 and seen[0][1] is None  # one call, an unused output gives None
    torch.testing.assert_close(reps[0].grad, torch.full((4, 5), 2.0))
    torch.testing.assert_close(reps[2].grad, torch.full((4, 5), 6.0))
    assert reps[1].grad is None


def test_fork_each_refuses_a_combine_with_the_wrong_count() -> None:
    reps = [torch.randn(2, requires_grad=True) for _ in range(T)]
    outs = mbk.fork_each(reps, lambda grads: list(grads)[:2])
    with pytest.raises(ValueError, match="must return 3 gradients, got 2"):
        sum(o.sum() for o in outs).backward()


def test_weigh_each_with_equal_weights_is_the_plain_gradient() -> None:
    bal = mbk.Balancer(mbk.Equal(T), full_gram=True)
    grads = [torch.randn(6, 4) for _ in range(T)]
    out = bal.weigh_each(grads)
    for g, o in zip(grads, out):
        torch.testing.assert_close(o, g)
    assert int(bal.step) == 1


def test_weigh_each_uses_the_float64_range_fallback() -> None:
    # float32 squared norms of these overflow (1e60 > 3.4e38): pass 1 is recomputed in
    # float64 and the step commits, as it does through the fork
    grads = [1e30 * torch.randn(8, 8) for _ in range(T)]
    bal = mbk.Balancer(mbk.MultiBalanceRule(T), full_gram=True)
    out = bal.weigh_each(grads)
    assert bal.stats is not None and bool(bal.stats.finite)
    assert int(bal.step) == 1
    expected = torch.stack([g.double().norm() for g in grads])
    torch.testing.assert_close(bal.stats.norms, expected, rtol=1e-5, atol=0.0)
    assert all(o is not None and torch.isfinite(o).all() for o in out)


def test_weigh_each_gives_an_unused_task_zero_gram_entries() -> None:
    bal = mbk.Balancer(mbk.Equal(T), full_gram=True)
    g = [torch.ones(3), None, 2.0 * torch.ones(3)]
    out = bal.weigh_each(g)
    assert out[1] is None
    assert bal.stats is not None
    assert bal.stats.gram[1].abs().sum() == 0 and bal.stats.gram[:, 1].abs().sum() == 0
    assert bal.stats.gram[0, 2] == pytest.approx(6.0)


def test_weigh_each_needs_one_entry_per_task_and_leaves_the_state_alone() -> None:
    bal = mbk.Balancer(mbk.MultiBalanceRule(T))
    with pytest.raises(ValueError, match="num_tasks=3 entries, got 2"):
        bal.weigh_each([torch.ones(2), torch.ones(2)])
    assert int(bal.step) == 0


@pytest.mark.parametrize("each", [False, True])
def test_forks_are_differentiable_once(each: bool) -> None:
    """A ``create_graph=True`` backward through a fork gives the first-order gradient;
    differentiating that gradient again raises (the combine callbacks run on values,
    not on a graph), whichever fork."""
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    if each:
        outs = fork_each([z, z * 1.0], lambda gs: [2.0 * g for g in gs])
    else:
        outs = fork(z, 2, lambda gs: 2.0 * (gs[0] + gs[1]))
    loss = sum((o**2).sum() for o in outs)
    (grad,) = torch.autograd.grad(loss, z, create_graph=True)
    torch.testing.assert_close(grad, 2.0 * 2.0 * 2.0 * z.detach(), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()
    # an ordinary backward through the same kind of fork is unaffected
    z.grad = None
    outs = fork(z, 2, lambda gs: gs[0] + gs[1])
    sum((o**2).sum() for o in outs).backward()
    torch.testing.assert_close(z.grad, 4.0 * z.detach(), rtol=0, atol=0)
