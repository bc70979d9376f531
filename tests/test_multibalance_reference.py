"""MultiBalance through the fork equals an independent float64 computation.

The reference gets each task's gradient with its own ``torch.autograd.grad``
call on a float64 copy of the model and applies the formula by hand; the
library gets them all from one ordinary backward through the fork.
"""

from __future__ import annotations

import copy

import pytest
import torch

import mbkernels as mbk

from .helpers import ToyMultiTask, multibalance_reference


@pytest.mark.parametrize("num_tasks", range(1, 9))
@pytest.mark.parametrize("reference", ["target", "mean", "max"])
def test_fork_gradient_matches_float64_reference_over_steps(num_tasks: int, reference: str) -> None:
    target = num_tasks - 1 if reference == "target" else 0
    beta, relax = 0.8, 0.6
    model = ToyMultiTask(num_tasks)
    model64 = copy.deepcopy(model).double()
    bal = mbk.MultiBalance(num_tasks, beta=beta, relax=relax, reference=reference, target=target)
    ema_ref = torch.zeros(num_tasks, dtype=torch.float64)
    for step in range(1, 5):
        x = torch.randn(7, 6)
        y = torch.randn(7, num_tasks)

        z = model.bottom(x)
        z.retain_grad()
        sum(model.task_losses(bal(z), y)).backward()

        z64 = model64.bottom(x.double()).detach().requires_grad_()
        losses64 = model64.task_losses([z64] * num_tasks, y.double())
        grads = [torch.autograd.grad(loss, z64, retain_graph=True)[0] for loss in losses64]
        combined, ema_ref, w_ref = multibalance_reference(
            grads, ema_ref, step, beta=beta, relax=relax, reference=reference, target=target
        )

        # float32 model vs float64 reference: compare relative to the gradient's scale
        scale = combined.abs().max().item()
        torch.testing.assert_close(z.grad.double(), combined, rtol=1e-5, atol=1e-5 * scale)
        torch.testing.assert_close(bal.stats.weights.double(), w_ref, rtol=2e-5, atol=1e-6)
        torch.testing.assert_close(bal.stats.ema.double(), ema_ref, rtol=2e-5, atol=1e-7)
        assert int(bal.stats.step) == step
        model.zero_grad()


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_relax_zero_is_the_plain_sum(num_tasks: int) -> None:
    model = ToyMultiTask(num_tasks)
    x, y = torch.randn(9, 6), torch.randn(9, num_tasks)
    bal = mbk.MultiBalance(num_tasks, relax=0.0)
    for _ in range(3):
        model.zero_grad()
        sum(model.task_losses(bal(model.bottom(x)), y)).backward()
        balanced = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        z = model.bottom(x)
        sum(model.task_losses([z] * num_tasks, y)).backward()
        plain = [p.grad.clone() for p in model.parameters()]
        # every weight is exactly 1: what is left is the order in which the T float32
        # task gradients are added (the fork's weighted sum against autograd's
        # accumulation), a few float32 roundings relative to the gradients' scale
        assert bal.stats is not None and bool((bal.stats.weights == 1.0).all())
        scale = max(float(b.abs().max()) for b in plain)
        for a, b in zip(balanced, plain):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=num_tasks * 2e-7 * scale)


@pytest.mark.parametrize("num_tasks", [1, 2, 3, 5])
def test_equal_rule_through_fork_is_the_plain_sum(num_tasks: int) -> None:
    """Equal weights give the task gradients' sum in task order, bit for bit. Autograd's
    plain sum adds the same gradients in its own order (the towers' backward order), so
    the two are bit-identical up to two tasks and within one rounding per addition above."""
    model = ToyMultiTask(num_tasks)
    x, y = torch.randn(9, 6), torch.randn(9, num_tasks)
    z = model.bottom(x)
    z.retain_grad()
    sum(model.task_losses(mbk.Balancer(mbk.Equal(num_tasks))(z), y)).backward()
    z2 = model.bottom(x).detach().requires_grad_()
    sum(model.task_losses([z2] * num_tasks, y)).backward()
    # the per-task gradients, each from its own autograd.grad, summed in task order
    z3 = model.bottom(x).detach().requires_grad_()
    per_task = [torch.autograd.grad(loss, z3)[0] for loss in model.task_losses([z3] * num_tasks, y)]
    in_order = per_task[0].clone()
    for g in per_task[1:]:
        in_order = in_order + g
    assert torch.equal(z.grad, in_order)
    if num_tasks <= 2:
        assert torch.equal(z.grad, z2.grad)
    else:
        ulp = torch.finfo(torch.float32).eps * sum(g.abs() for g in per_task)
        assert ((z.grad - z2.grad).abs() <= (num_tasks - 1) * ulp).all()


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (2, 3, 4, 2), (1,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_any_shape_and_float_dtype(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    bal = mbk.MultiBalance(3, beta=0.5, relax=1.0, reference="mean")
    z = torch.randn(shape, dtype=dtype, requires_grad=True)
    outs = bal(z)
    assert len(outs) == 3 and all(o.shape == z.shape and torch.equal(o, z) for o in outs)
    coefs = [1.0, -3.0, 10.0]
    sum(c * o.float().pow(2).sum() for c, o in zip(coefs, outs)).backward()
    assert z.grad is not None and z.grad.dtype == dtype and z.grad.shape == z.shape
    assert bal.stats.gram.dtype == torch.float64  # the rule always runs in float64
    # relax=1, mean reference, one step: every task is rescaled to the mean norm.
    g = [2 * c * z.detach().double() for c in coefs]
    combined, _, _ = multibalance_reference(
        g, torch.zeros(3), 1, beta=0.5, relax=1.0, reference="mean", target=0
    )
    tol = {torch.float16: 2e-2, torch.bfloat16: 2e-2}.get(dtype, 1e-5)
    torch.testing.assert_close(z.grad.double(), combined, rtol=tol, atol=tol)


def test_unused_tower_contributes_zero_gradient_not_an_error() -> None:
    bal = mbk.MultiBalance(3, reference="max")
    z = torch.randn(4, 3, requires_grad=True)
    z0, _unused, z2 = bal(z)
    (z0.sum() + 3 * z2.sum()).backward()
    stats = bal.stats
    assert stats.norms[1] == 0 and torch.isfinite(stats.weights).all()
    assert stats.cosine[1].abs().sum() == 0
    # relax 0.7, max reference, step 1: w0 = 0.7*3/1+0.3, w2 = 1.0
    expected = (0.7 * 3 + 0.3) * torch.ones(4, 3) + 1.0 * 3 * torch.ones(4, 3)
    torch.testing.assert_close(z.grad, expected)


def test_no_grad_and_inference_return_plain_tensors() -> None:
    bal = mbk.MultiBalance(2)
    z = torch.randn(3, 2)
    with torch.no_grad():
        outs = bal(z.requires_grad_())
    assert all(o is z for o in outs)
    assert bal.stats is None and int(bal.step) == 0


def test_stats_are_detached_device_tensors_and_cosine_is_correct() -> None:
    bal = mbk.MultiBalance(3, full_gram=True)
    z = torch.randn(6, 4, requires_grad=True)
    a, b, c = bal(z)
    u, v = torch.randn(6, 4), torch.randn(6, 4)
    ((a * u).sum() + (b * v).sum() + (c * -u).sum()).backward()
    s = bal.stats
    for t in (s.gram, s.norms, s.weights, s.ema, s.step, s.finite, s.cosine):
        assert isinstance(t, torch.Tensor) and not t.requires_grad and t.device == z.device
    cos_uv = torch.nn.functional.cosine_similarity(u.flatten(), v.flatten(), dim=0)
    torch.testing.assert_close(s.cosine[0, 1], cos_uv.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.cosine[0, 2], torch.tensor(-1.0).double(), rtol=1e-5, atol=1e-6)
    d = s.as_dict()
    assert set(d) >= {"norms", "weights", "cosine", "step", "ema", "finite"}


def test_norms_only_pass_gives_the_full_gram_weights_and_marks_cosines_unknown() -> None:
    """MultiBalance reads only the norms: by default pass 1 skips the inner products
    between tasks. Weights, EMA and gradients equal the full-Gram balancer's; the
    stats' off-diagonal is NaN (not computed), never a misleading 0."""
    torch.manual_seed(3)
    fast, full = mbk.MultiBalance(3), mbk.MultiBalance(3, full_gram=True)
    for _ in range(4):
        u, v, w = (torch.randn(7, 5) * s for s in (1.0, 10.0, 0.1))
        grads = []
        for bal in (fast, full):
            z = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
            a, b, c = bal(z)
            ((a * u).sum() + (b * v).sum() + (c * w).sum()).backward()
            grads.append(z.grad)
        # float32 dot products vs BLAS Gram: equal up to rounding.
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
        sf, sg = fast.stats, full.stats
        torch.testing.assert_close(sf.weights, sg.weights, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(sf.ema, sg.ema, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(sf.norms, sg.norms, rtol=1e-5, atol=1e-7)
        off = ~torch.eye(3, dtype=torch.bool)
        assert sf.gram[off].isnan().all() and sg.gram[off].isfinite().all()
        assert sf.cosine[off].isnan().all()
        torch.testing.assert_close(sf.cosine.diagonal(), torch.ones(3, dtype=torch.float64))
    assert "full_gram=True" in repr(full) and "full_gram" not in repr(fast)
    with pytest.raises(ValueError, match="full_gram must be True or False"):
        mbk.MultiBalance(3, full_gram=1)  # type: ignore[arg-type]
