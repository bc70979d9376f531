"""The Triton kernels on the path training takes, at the sizes a GPU launch uses.

Compiled (``MBK_TRITON_COMPILED=1`` on a CUDA machine) these run N = 2^20, 2^20 + 48
and 600,011 per task: pass 1 then runs its multi-block loop (2^20 elements are 8,192
blocks over 4-10 programs per SM, 6-16 blocks each, an odd count for some), pass 2 its
16-byte vector loads (aligned, N divisible by 16), its aligned element-by-element
variant (600,011) and, for views off a 16-byte boundary, the unaligned one; at 4 and
8 tasks (the outer-product pass 1) and 12 (the ``tl.dot`` one), in bfloat16, float16
and float32. Through the interpreter (CPU, the default) the same tests run at sizes
scaled down so that the programs still loop over several blocks, an odd number in
some, with a partial last block.

Only pytest and torch (and triton) are needed: run them on a GPU machine with
``MBK_TRITON_COMPILED=1 python -m pytest -o addopts="" tests/test_ops_triton_real_path.py``.
"""

from __future__ import annotations

import pytest
import torch

from mbkernels import ops
from mbkernels.ops import triton_ops

from .conftest import COMPILED, KERNEL_DEVICE, requires_triton

pytestmark = [requires_triton, pytest.mark.interpret]

#: vector loads (aligned, N % 16 == 0), the same with a partial last block, odd N.
SIZES = [2**20, 2**20 + 48, 600_011] if COMPILED else [4096, 4096 + 48, 6011]
TASKS = [4, 8, 12]
DTYPES = [torch.bfloat16, torch.float16, torch.float32]
TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float16: {"rtol": 1e-3, "atol": 1e-3},
    torch.bfloat16: {"rtol": 8e-3, "atol": 8e-3},
}


def _grads(t: int, n: int, dtype: torch.dtype, offset: int = 0) -> list[torch.Tensor]:
    """``t`` gradients of very different scales (as in a multi-task model), made on the
    kernel device; ``offset > 0``: views that start ``offset`` elements into storage."""
    gen = torch.Generator(device=KERNEL_DEVICE).manual_seed(t * 1000 + n % 1000)
    out = []
    for i in range(t):
        full = torch.randn(n + offset, generator=gen, device=KERNEL_DEVICE) * 10.0 ** (i % 4 - 1)
        out.append(full.to(dtype)[offset:])
    return out


def _gram64(gs: list[torch.Tensor]) -> torch.Tensor:
    m = torch.stack([g.double() for g in gs])
    return m @ m.T


def _check_gram(gs: list[torch.Tensor]) -> None:
    got = ops.gram(gs, backend="triton")
    ref = _gram64(gs)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    # float32 accumulation of exact products: relative to the largest entry.
    scale = ref.abs().max().item()
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(got, got.T)


def _check_weighted_sum(gs: list[torch.Tensor]) -> None:
    t = len(gs)
    w = torch.linspace(0.25, 3.0, t, device=KERNEL_DEVICE)
    got = ops.weighted_sum(gs, w, backend="triton")
    exact = sum(w_t.double() * g.double() for w_t, g in zip(w, gs))
    assert got.dtype == gs[0].dtype and got.shape == gs[0].shape
    # Relative to the largest task's scale: float32 accumulation, one rounding to dtype.
    scale = exact.abs().max().item()
    tol = TOL[gs[0].dtype]
    torch.testing.assert_close(got.double(), exact, rtol=tol["rtol"], atol=tol["atol"] * scale)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("t", TASKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_both_passes_at_real_sizes(n: int, t: int, dtype: torch.dtype) -> None:
    gs = _grads(t, n, dtype)
    assert triton_ops._aligned(gs)  # fresh allocations: the vector variants where n allows
    _check_gram(gs)
    _check_weighted_sum(gs)


@pytest.mark.parametrize("offset", [1, 3])
@pytest.mark.parametrize("t", [4, 8, 12])
@pytest.mark.parametrize("dtype", DTYPES)
def test_both_passes_on_views_off_a_16_byte_boundary(offset: int, t: int, dtype) -> None:
    gs = _grads(t, SIZES[1], dtype, offset=offset)
    assert not triton_ops._aligned(gs)  # the unaligned variants
    _check_gram(gs)
    _check_weighted_sum(gs)


def test_pass1_programs_loop_over_several_blocks_an_odd_number_in_some() -> None:
    """What the sizes above exercise: several blocks per program, an odd count for the
    outer-product kernel's two-block loop, and a last program with fewer blocks."""
    device = KERNEL_DEVICE
    for t in (4, 12):
        _, block, _ = triton_ops.gram_launch(t)
        if not COMPILED and t > triton_ops.OUTER_MAX_TASKS:
            block = 64  # the interpreter's block for the tl.dot kernel
        counts = set()
        for n in SIZES:
            n_blocks = -(-n // block)
            programs, per = triton_ops.gram_programs(t, n_blocks, device)
            assert programs > 1 and per > 2
            counts |= {per, n_blocks - (programs - 1) * per}
        assert any(c % 2 for c in counts) and len(counts) > 1


@pytest.mark.parametrize("t", [4, 8])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("range_check", [True, False])
def test_fused_step_equals_the_float64_step(t: int, dtype, range_check: bool) -> None:
    """The whole fork backward (pass 1, MultiBalance rule, pass 2) on the Triton path
    against the same step on float64 copies of the gradients."""
    from mbkernels.balancer import Balancer
    from mbkernels.rules import MultiBalanceRule

    gs = _grads(t, SIZES[1], dtype)
    outs = {}
    for name, grads, backend in (
        ("triton", gs, "triton"),
        ("float64", [g.double() for g in gs], "torch"),
    ):
        rule = MultiBalanceRule(t, beta=0.9, relax=0.7)
        bal = Balancer(rule, backend=backend, range_check=range_check).to(KERNEL_DEVICE)
        for _ in range(2):
            out = bal._combine(grads)
        assert out is not None
        outs[name] = out
    ref = outs["float64"]
    tol = TOL[dtype]
    scale = ref.abs().max().item()
    torch.testing.assert_close(
        outs["triton"].double(), ref, rtol=tol["rtol"], atol=tol["atol"] * scale
    )
