"""Gradient accumulation (docs/production.md): ``k`` micro-steps with ``beta ** (1 / k)``
equal one step with ``beta`` at every optimizer-step boundary, for equal micro-batch norms;
and the accumulated gradient is the sum of the micro-batches' balanced gradients."""

from __future__ import annotations

import pytest
import torch

import mbkernels as mbk

from .helpers import multibalance_reference


@pytest.mark.parametrize("k", [1, 2, 3, 8])
@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("reference", ["target", "mean", "max"])
def test_k_micro_steps_with_beta_root_equal_one_step_with_beta(
    k: int, beta: float, reference: str
) -> None:
    t = 3
    once = mbk.MultiBalance(t, beta=beta, reference=reference, target=1)
    micro = mbk.MultiBalance(t, beta=beta ** (1 / k), reference=reference, target=1)
    gen = torch.Generator().manual_seed(k)
    for _ in range(5):  # optimizer steps, a different Gram matrix each
        a = torch.randn(t, 6, generator=gen, dtype=torch.float64)
        a *= torch.logspace(-1, 1, t, dtype=torch.float64)[:, None]
        gram = a @ a.T
        w_once = once.step_weights(gram)
        for _ in range(k):
            w_micro = micro.step_weights(gram)
        torch.testing.assert_close(w_micro, w_once, rtol=2e-5, atol=0)
        torch.testing.assert_close(
            micro.stats.state["ema"], once.stats.state["ema"], rtol=2e-5, atol=0
        )
    assert int(micro.step) == 5 * k and int(once.step) == 5


def test_accumulated_gradient_is_the_sum_of_each_micro_batch_balanced_gradient() -> None:
    t, k, beta, shape = 3, 4, 0.8, (5, 7)
    bal = mbk.MultiBalance(t, beta=beta, relax=0.6, reference="mean")
    z = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    ema, expected = torch.zeros(t, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    for step in range(1, k + 1):
        grads = [s * torch.randn(shape, generator=gen, dtype=torch.float64) for s in (0.1, 1, 10)]
        sum((o * g).sum() for o, g in zip(bal(z), grads)).backward()  # accumulates into z.grad
        combined, ema, _ = multibalance_reference(
            grads, ema, step, beta=beta, relax=0.6, reference="mean", target=0
        )
        expected += combined
    assert z.grad is not None
    # weights and EMA are stored in float32: agreement to float32 precision of the scale
    scale = expected.abs().max().item()
    torch.testing.assert_close(z.grad, expected, rtol=1e-5, atol=1e-6 * scale)
