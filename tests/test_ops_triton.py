"""The Triton kernels equal the PyTorch reference path.

On CPU they run through the Triton interpreter (conftest sets
TRITON_INTERPRET=1); with MBK_TRITON_COMPILED=1 on a CUDA machine the same
tests run the compiled kernels. Sizes cover N smaller than a block, not a
multiple of it, and several blocks per program.
"""

from __future__ import annotations

import pytest
import torch

import mbkernels as mbk
from mbkernels import ops

from .conftest import KERNEL_DEVICE, requires_triton

pytestmark = [requires_triton, pytest.mark.interpret]

TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float16: {"rtol": 1e-3, "atol": 1e-3},
    torch.bfloat16: {"rtol": 8e-3, "atol": 8e-3},
}
SIZES = [37, 300, 4099, 33_003]  # < one block, not a multiple, many blocks per program
#: Pass 2 runs one block per program, so "many blocks per program" does not arise: 4099 is
#: several programs and a partial block, and a larger size only adds programs (which the
#: interpreter runs one after another).
SUM_SIZES = SIZES[:3]


def _grads(t: int, n: int, dtype: torch.dtype, zero: int | None = None) -> list[torch.Tensor]:
    scales = torch.logspace(-1, 1, t)
    gs = [(s * torch.randn(n)).to(dtype).to(KERNEL_DEVICE) for s in scales]
    if zero is not None:
        gs[zero] = torch.zeros_like(gs[zero])
    return gs


def _gram64(gs: list[torch.Tensor]) -> torch.Tensor:
    m = torch.stack([g.double().reshape(-1) for g in gs])
    return m @ m.T


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("t", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gram_kernel_matches_reference(n: int, t: int, dtype: torch.dtype) -> None:
    gs = _grads(t, n, dtype, zero=t - 1 if t >= 3 else None)
    got = ops.gram(gs, backend="triton")
    ref = ops.gram(gs, backend="torch")
    assert got.dtype == torch.float32 and got.shape == (t, t)
    # Both accumulate float32 products of the same upcast inputs; compare to float64 too.
    scale = ref.abs().max().item()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(got.double(), _gram64(gs), rtol=1e-5, atol=1e-5 * scale)
    if t >= 3:
        assert got[t - 1].abs().sum() == 0


@pytest.mark.parametrize("t", [1, 3, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norms_pass_is_the_gram_kernels_diagonal(t: int, dtype: torch.dtype) -> None:
    gs = _grads(t, 4099, dtype)
    got = ops.sq_norms(gs, backend="triton")
    assert got.shape == (t,) and got.dtype == torch.float32
    torch.testing.assert_close(got, ops.sq_norms(gs, backend="torch"), rtol=1e-5, atol=0)
    torch.testing.assert_close(got.double(), _gram64(gs).diagonal(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("n", SUM_SIZES)
@pytest.mark.parametrize("t", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_weighted_sum_kernel_matches_reference(n: int, t: int, dtype: torch.dtype) -> None:
    gs = _grads(t, n, dtype, zero=0 if t >= 2 else None)
    w = torch.rand(t, device=KERNEL_DEVICE) * 3
    got = ops.weighted_sum(gs, w, backend="triton")
    ref = ops.weighted_sum(gs, w, backend="torch")
    exact = sum(w_t.double() * g.double() for w_t, g in zip(w, gs))
    assert got.dtype == dtype and got.shape == gs[0].shape
    torch.testing.assert_close(got, ref, **TOL[dtype])
    torch.testing.assert_close(got.double(), exact, **TOL[dtype])


@pytest.mark.parametrize("t", [5, 17, 33])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compiled_launch_sizes_give_the_same_results(monkeypatch, t: int, dtype) -> None:
    """Through the interpreter the kernels normally run with small blocks (speed); here
    with the block sizes and warps a GPU launch uses (gram_launch, weighted_sum_launch):
    T_PAD 16/32/64 with 256/64/32-element blocks, pass-2 blocks of 512/128/128."""
    from mbkernels.ops import triton_ops

    monkeypatch.setattr(triton_ops, "triton_interpreting", lambda: False)
    gs = _grads(t, 1000, dtype)
    w = torch.rand(t, device=KERNEL_DEVICE) * 3
    ref = _gram64(gs)
    scale = ref.abs().max().item()
    torch.testing.assert_close(
        triton_ops.gram_triton(gs).double(), ref, rtol=1e-5, atol=1e-5 * scale
    )
    exact = sum(w_t.double() * g.double() for w_t, g in zip(w, gs))
    torch.testing.assert_close(triton_ops.weighted_sum_triton(gs, w).double(), exact, **TOL[dtype])


@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_off_a_16_byte_boundary_use_the_unaligned_kernels(
    monkeypatch, offset: int, dtype
) -> None:
    """Views with a storage offset start off a 16-byte boundary: the kernels then must
    not be told the addresses are aligned (vector loads would fault or misread)."""
    from mbkernels.ops import triton_ops

    monkeypatch.setattr(triton_ops, "triton_interpreting", lambda: False)  # GPU launch sizes
    t, n = 5, 1001
    storage = [torch.randn(n + offset).to(dtype).to(KERNEL_DEVICE) for _ in range(t)]
    gs = [s[offset:] for s in storage]
    assert triton_ops._aligned(gs) == (offset * storage[0].element_size() % 16 == 0)
    launched = []
    kernel = triton_ops._weighted_sum_kernel
    monkeypatch.setattr(
        triton_ops,
        "_weighted_sum_kernel",
        _Recorder(kernel, launched),
    )
    w = torch.rand(t, device=KERNEL_DEVICE) * 3
    exact = sum(w_t.double() * g.double() for w_t, g in zip(w, gs))
    got = triton_ops.weighted_sum_triton(gs, w)
    torch.testing.assert_close(got.double(), exact, **TOL[dtype])
    assert launched == [triton_ops._aligned(gs)]
    ref = _gram64(gs)
    scale = ref.abs().max().item()
    torch.testing.assert_close(
        triton_ops.gram_triton(gs).double(), ref, rtol=1e-5, atol=1e-5 * scale
    )


class _Recorder:
    """Stands in for a Triton kernel: records the ALIGNED flag of each launch."""

    def __init__(self, kernel, launched: list) -> None:  # type: ignore[no-untyped-def]
        self.kernel, self.launched = kernel, launched

    def __getitem__(self, grid):  # type: ignore[no-untyped-def]
        def launch(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.launched.append(kwargs["ALIGNED"])
            return self.kernel[grid](*args, **kwargs)

        return launch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("t", [2, 5])
def test_balancer_triton_equals_torch_with_unused_tower(dtype: torch.dtype, t: int) -> None:
    """Several steps through the whole module, one tower unused, one task all-zero."""
    results = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(1)
        bal = mbk.MultiBalance(t, beta=0.7, relax=0.8, reference="mean", backend=backend)
        grads = []
        for _ in range(3):
            z = torch.randn(3, 7, 11, device=KERNEL_DEVICE, dtype=dtype, requires_grad=True)
            outs = bal(z)
            coefs = torch.linspace(-2, 4, t).tolist()
            # task 0 unused; task 1 has an all-zero gradient (multiplied by 0)
            loss = sum(c * o.float().pow(2).sum() for c, o in zip(coefs[1:], outs[1:]))
            loss = loss + 0.0 * outs[1].float().sum()
            loss.backward()
            grads.append(z.grad)
        results[backend] = (grads, bal.state_dict())
    for a, b in zip(results["torch"][0], results["triton"][0]):
        torch.testing.assert_close(a, b, **TOL[dtype])
    sa, sb = results["torch"][1], results["triton"][1]
    torch.testing.assert_close(sa["ema"], sb["ema"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sa["weights"], sb["weights"], rtol=1e-4, atol=1e-6)


def test_non_contiguous_and_expanded_gradients() -> None:
    base = torch.randn(64, 48, device=KERNEL_DEVICE)
    gs = [base.T, torch.ones(48, 64, device=KERNEL_DEVICE).expand(48, 64), base.T * 2]
    gs[1] = torch.ones(1, 1, device=KERNEL_DEVICE).expand(48, 64)  # stride 0, as from .sum()
    w = torch.tensor([1.0, -2.0, 0.5], device=KERNEL_DEVICE)
    torch.testing.assert_close(ops.gram(gs, "triton"), ops.gram(gs, "torch"), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ops.weighted_sum(gs, w, "triton"), ops.weighted_sum(gs, w, "torch"))


def test_gradients_beyond_int32_offsets_are_refused_with_a_clear_error() -> None:
    from mbkernels.ops import triton_ops

    triton_ops._check_size(triton_ops.MAX_ELEMENTS)  # the largest allowed
    with pytest.raises(ValueError, match="int32 offsets.*backend='torch'"):
        triton_ops._check_size(triton_ops.MAX_ELEMENTS + 1)


def _int32(x: int) -> int:
    """``x`` wrapped to int32, as the kernels' integer arithmetic does."""
    return (x + 2**31) % 2**32 - 2**31


@pytest.mark.parametrize("t", [4, 8, 16, 33])
@pytest.mark.parametrize("n_below", [0, 1, 255, 4096, 68_000])
def test_pass1_offsets_stay_within_int32_up_to_the_largest_size(t: int, n_below: int) -> None:
    """Pass 1's column offsets for N up to MAX_ELEMENTS = 2^31 - 1, on an H200's 132 SMs,
    computed as the kernels do (int32): ``n_blocks = (n - 1) // BLOCK + 1``, ``first =
    pid * blocks_per_program``, blocks ``b`` in ``[first, last)`` with ``last =
    min(first + blocks_per_program, n_blocks)``, offsets ``b * BLOCK + [0, BLOCK)``; the
    outer-product kernel also forms ``end`` and compares ``cols < end - BLOCK`` for its
    second block. Every value must equal its exact (unwrapped) value. Negative controls:
    ``tl.cdiv(n, BLOCK)`` (n + BLOCK - 1) and looping over blocks that do not exist (up to
    ``first + blocks_per_program``) wrap near 2^31."""
    from mbkernels.ops import triton_ops

    n = triton_ops.MAX_ELEMENTS - n_below
    t_pad, block, _ = triton_ops.gram_launch(t)
    n_blocks = -(-n // block)
    outer = t <= triton_ops.OUTER_MAX_TASKS
    per_sm = triton_ops.OUTER_PROGRAMS_PER_SM[t_pad] if outer else 4  # as gram_programs
    programs, per = triton_ops.gram_grid(n_blocks, per_sm * 132)
    assert (programs - 1) * per < n_blocks <= programs * per
    # n_blocks as the kernels form it; tl.cdiv's n + BLOCK - 1 wraps here: the control.
    assert _int32(_int32(n - 1) // block + 1) == n_blocks
    if n_below < block - 1:
        assert _int32(n + block - 1) < 0
    unbounded_wraps = False
    for pid in range(programs):
        first = _int32(pid * per)
        last = min(_int32(first + per), n_blocks)
        assert first == pid * per and first < last
        exact_end = last * block if last < n_blocks else n
        end = _int32(last * block) if last < n_blocks else n
        assert end == exact_end <= n and _int32(end - block) == end - block
        for b in (first, last - 1):  # offsets grow with b: the extremes suffice
            assert _int32(b * block + block - 1) == b * block + block - 1
        unbounded_wraps |= _int32((first + per - 1) * block + block - 1) < 0
    if n_below <= 255:  # a loop without the stop at the last block wraps here, at every launch size
        assert unbounded_wraps
