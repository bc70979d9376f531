"""The PyTorch path of the fused step (CPU, and the reference) against float64.

Sizes cross the chunk and row boundaries (pass 1's ``CPU_CHUNK`` and ``NORM_ROW``, pass 2's
``CPU_SUM_CHUNK``); every dtype; non-contiguous and expanded gradients, as
autograd hands them over.
"""

from __future__ import annotations

import pytest
import torch

from mbkernels import ops
from mbkernels.ops.torch_ops import CPU_CHUNK, CPU_SUM_CHUNK, NORM_ROW

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# relative tolerance of a float32 (float64) accumulation of products of the inputs
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-5, torch.bfloat16: 1e-5}
# pass 2 rounds its result to the input dtype
OUT_TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float64: {"rtol": 1e-12, "atol": 1e-12},
    torch.float16: {"rtol": 1e-3, "atol": 1e-3},
    torch.bfloat16: {"rtol": 8e-3, "atol": 8e-3},
}
# (T, N): small sizes at every T, the chunk-crossing sizes at two T (keeps it fast)
CASES = [(t, n) for t in (1, 2, 5, 8) for n in (1, 37, NORM_ROW, 3 * NORM_ROW + 1)] + [
    (t, n) for t in (2, 8) for n in (CPU_CHUNK + 3, CPU_SUM_CHUNK + 5)
]


def _grads(t: int, n: int, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(s * torch.randn(n, generator=g)).to(dtype) for s in torch.logspace(-1, 1, t)]


def _stack64(gs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([g.double().reshape(-1) for g in gs])


@pytest.mark.parametrize(("t", "n"), CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_and_norms_match_float64(t: int, n: int, dtype: torch.dtype) -> None:
    gs = _grads(t, n, dtype)
    m = _stack64(gs)
    ref = m @ m.T
    gram, norms = ops.gram(gs, "torch"), ops.sq_norms(gs, "torch")
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert gram.dtype == acc and norms.dtype == acc and norms.shape == (t,)
    scale = ref.abs().max().item()
    torch.testing.assert_close(gram.double(), ref, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    torch.testing.assert_close(norms.double(), ref.diagonal(), rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize(("t", "n"), CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_sum_matches_float64(t: int, n: int, dtype: torch.dtype) -> None:
    gs = _grads(t, n, dtype, seed=1)
    w = torch.linspace(-1.5, 2.5, t)
    got = ops.weighted_sum(gs, w, "torch")
    exact = (w.double()[:, None] * _stack64(gs)).sum(0)
    assert got.dtype == dtype and got.shape == (n,)
    torch.testing.assert_close(got.double(), exact, **OUT_TOL[dtype])


def test_empty_gradients() -> None:
    gs = [torch.empty(0, 4) for _ in range(3)]
    assert torch.equal(ops.sq_norms(gs, "torch"), torch.zeros(3))
    assert torch.equal(ops.gram(gs, "torch"), torch.zeros(3, 3))
    assert ops.weighted_sum(gs, torch.ones(3), "torch").shape == (0, 4)


def test_non_contiguous_and_expanded_gradients() -> None:
    base = torch.randn(64, 48, dtype=torch.float64)
    gs = [base.T, torch.ones(1, 1, dtype=torch.float64).expand(48, 64), -2 * base.T]
    m = _stack64(gs)
    w = torch.tensor([1.0, -2.0, 0.5])
    torch.testing.assert_close(ops.gram(gs, "torch"), m @ m.T)
    torch.testing.assert_close(ops.sq_norms(gs, "torch"), (m * m).sum(1))
    torch.testing.assert_close(
        ops.weighted_sum(gs, w, "torch"), (w.double()[:, None] * m).sum(0).view(48, 64)
    )


@pytest.mark.parametrize(
    "grads",
    [
        [torch.zeros(3), torch.zeros(4)],  # lengths differ: would be read over 3 elements
        [torch.zeros(2, 3), torch.zeros(3, 2)],  # same length, different shape
        [torch.zeros(3), torch.zeros(3, dtype=torch.float64)],
        [torch.zeros(3), torch.zeros(3, device="meta")],
    ],
)
def test_passes_refuse_gradients_that_differ(grads) -> None:  # type: ignore[no-untyped-def]
    for call in (ops.gram, ops.sq_norms, lambda g: ops.weighted_sum(g, torch.ones(len(g)))):
        with pytest.raises(
            ValueError, match=r"grads must share one shape, dtype and device.*grads\[1\]"
        ):
            call(grads)


def test_passes_refuse_empty_or_non_tensor_gradients_and_wrong_weights() -> None:
    for call in (ops.gram, ops.sq_norms, lambda g: ops.weighted_sum(g, torch.ones(len(g)))):
        with pytest.raises(ValueError, match="at least one tensor"):
            call([])
        with pytest.raises(TypeError, match=r"grads\[1\] must be a torch.Tensor, got list"):
            call([torch.zeros(3), [0.0, 0.0, 0.0]])
    for weights in (torch.ones(3), torch.ones(2, 1), [1.0, 1.0]):
        with pytest.raises(ValueError, match=r"weights must be a \[2\] tensor"):
            ops.weighted_sum([torch.zeros(3), torch.zeros(3)], weights)  # type: ignore[arg-type]
