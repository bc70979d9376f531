"""Gram statistics keep float64 range: huge and tiny finite gradients are balanced exactly."""

from __future__ import annotations

import pytest
import torch

import mbkernels as mbk
from mbkernels.numerics import gram_float64, range_safe_gram

from .helpers import multibalance_reference

T, SHAPE = 3, (7, 5)


def _combine(bal: mbk.Balancer, grads: list[torch.Tensor]) -> torch.Tensor:
    z = torch.zeros(SHAPE, dtype=grads[0].dtype, requires_grad=True)
    sum((o * g).sum() for o, g in zip(bal(z), grads)).backward()
    assert z.grad is not None
    return z.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("magnitude", [1e30, 1e20, 1e-20, 1e-30])
def test_huge_and_tiny_gradients_get_exact_statistics(dtype: torch.dtype, magnitude: float) -> None:
    base = [c * torch.randn(SHAPE, dtype=torch.float64) for c in (1.0, 4.0, 0.25)]
    grads = [(magnitude * b).to(dtype) for b in base]
    g64 = [g.double() for g in grads]  # the exact inputs the balancer sees
    bal = mbk.MultiBalance(T, beta=0.9, relax=0.7, reference="mean")
    out = _combine(bal, grads)
    expect, _ema, w = multibalance_reference(
        g64, torch.zeros(T), 1, beta=0.9, relax=0.7, reference="mean", target=0
    )
    torch.testing.assert_close(
        bal.stats.norms, torch.stack([g.norm() for g in g64]), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(bal.weights.double(), w, rtol=1e-5, atol=0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(
        out.double(), expect, rtol=2e-2 if dtype == torch.bfloat16 else 1e-5, atol=0
    )


def test_fast_path_is_kept_when_float32_suffices() -> None:
    grads = [torch.randn(SHAPE) for _ in range(T)]
    fast = mbk.ops.gram(grads)
    assert torch.equal(range_safe_gram(grads), fast.double())
    torch.testing.assert_close(gram_float64(grads), fast.double(), rtol=1e-5, atol=1e-5)


def test_without_range_check_an_overflowing_gram_is_a_nonfinite_step() -> None:
    grads = [1e30 * torch.randn(SHAPE) for _ in range(T)]
    bal = mbk.MultiBalance(T, range_check=False)
    _combine(bal, grads)
    assert not bool(bal.stats.finite) and int(bal.step) == 0
    with pytest.raises(ValueError, match="range_check must be True or False"):
        mbk.MultiBalance(T, range_check=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("magnitude", [1e30, 1e-30])
def test_the_float64_pass_1_spans_chunks_and_float32s_range(
    dtype: torch.dtype, magnitude: float
) -> None:
    from mbkernels.numerics import sq_norms_float64
    from mbkernels.ops.torch_ops import CPU_CHUNK, NORM_ROW

    n = CPU_CHUNK + NORM_ROW + 3  # several chunks, norm rows and a tail
    grads = [(magnitude * c * torch.randn(n, dtype=torch.float64)).to(dtype) for c in (1, 3)]
    flat = torch.stack([g.double() for g in grads])
    expect = flat @ flat.T
    torch.testing.assert_close(gram_float64(grads), expect, rtol=1e-12, atol=0)
    torch.testing.assert_close(sq_norms_float64(grads), expect.diagonal(), rtol=1e-12, atol=0)
