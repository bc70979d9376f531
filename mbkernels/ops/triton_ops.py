"""The fused step's two passes as Triton kernels.

The T per-task gradients arrive from autograd as T separate tensors. Rather
than stacking them (a full ``[T, N]`` copy), both kernels receive a small
device table of their base addresses and build the ``[T, BLOCK]`` tile
pointers themselves.

Pass 1 has two kernels. Up to 8 tasks, ``_gram_outer_kernel``: every thread
owns one column of a ``[T_PAD, BLOCK]`` tile (all T values of its column, upcast
to float32) and adds their ``T_PAD x T_PAD`` outer product to per-thread
accumulators, one FFMA per product; the columns are summed once, at the end.
Beyond 8 tasks, ``_gram_kernel``: the tile is padded to at least 16 rows and
``tile @ tile.T`` goes through ``tl.dot`` (with ``input_precision="ieee"``
that is FFMA too, 16 x 16 products per column however few tasks there are;
the outer product's per-thread accumulators would not fit in registers).
Each program owns a contiguous run of blocks, stops at the last block that
exists (so its int32 column offsets stay below 2^31), and writes one partial
Gram matrix; the partials are summed in a fixed order afterwards
(deterministic, no atomics).

Pass 2, ``_weighted_sum_kernel``: each program loads one block of every
gradient, accumulates ``sum_t w_t * g_t`` in float32 and stores one block of
the output in the gradients' dtype.

Memory traffic for T gradients of N elements of ``s`` bytes:
pass 1 reads ``T*N*s`` (+ ``P*T_PAD^2*4`` for P partials, negligible),
pass 2 reads ``T*N*s`` and writes ``N*s``: ``(2T + 1) * N * s`` in total.
That is the minimum for any method whose weights depend on the whole Gram
matrix and whose gradients do not fit on chip; a stack-based composition
moves about three times as much.

Pass 2, and pass 1 beyond 8 tasks, read gradients on 16-byte boundaries (the
wrapper checks; fresh allocations are) with 16-byte vector loads (``ALIGNED``:
the addresses come from the table, so the compiler must be told). Launch sizes (:func:`gram_launch`,
:func:`weighted_sum_launch`) keep each program's working set in registers when
compiled for A100 (sm_80) and H100/H200 (sm_90) in float32, float16 and
bfloat16, up to 128 tasks. ``tools/triton_resources.py`` compiles the kernels
for those GPUs on any machine (no GPU needed) and prints registers, spill
stores, load widths and the hot loop's warp-instructions per gradient column;
``tests/test_triton_compile.py`` runs it;
docs/benchmarks.md has the results.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from .backend import triton_interpreting

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


@triton.jit
def _gram_outer_kernel(
    table_ptr,  # int64[T]: base addresses of the T gradients
    partial_ptr,  # float32[P, T_PAD, T_PAD]: one partial Gram matrix per program
    n_elements,
    blocks_per_program,
    T: tl.constexpr,
    T_PAD: tl.constexpr,  # next power of two >= T
    BLOCK: tl.constexpr,  # one column per thread: 32 * num_warps
    DTYPE: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = tl.arange(0, T_PAD)
    row_ok = rows < T
    bases = tl.load(table_ptr + rows, mask=row_ok, other=0).to(tl.pointer_type(DTYPE))
    # [T_PAD, T_PAD, BLOCK]: T_PAD^2 float32 accumulators per thread (64 at T = 8).
    acc = tl.zeros((T_PAD, T_PAD, BLOCK), dtype=tl.float32)
    first = pid * blocks_per_program
    # cdiv(n, BLOCK) without forming n + BLOCK - 1, which wraps in int32 near 2^31 (n >= 1).
    n_blocks = (n_elements - 1) // BLOCK + 1
    last = tl.minimum(first + blocks_per_program, n_blocks)  # only blocks that exist
    # This program's columns end at `end`: a block boundary below n (last * BLOCK < n when
    # last < n_blocks; otherwise it may wrap, and is not used), or n for the last program.
    end = tl.where(last < n_blocks, last * BLOCK, n_elements)
    # Two blocks per iteration: both tiles' loads are in flight before either is used.
    # Loads are one element per thread and row (no vector hint): each thread then holds
    # all T values of its column, and the outer product needs no data from other threads.
    # A warp's load of one row is 32 consecutive elements, one coalesced 64/128-byte read;
    # every byte of the T gradients is read once.
    for b in range(first, last, 2):
        # b < cdiv(n, BLOCK) and BLOCK divides 2^31: the offsets stay <= 2^31 - 1.
        cols = b * BLOCK + tl.arange(0, BLOCK)
        ptrs = bases[:, None] + cols[None, :]
        x0 = tl.load(ptrs, mask=row_ok[:, None] & (cols < end)[None, :], other=0.0)
        # The second block (cols + BLOCK, compared without forming it) may lie past `end`.
        x1 = tl.load(ptrs + BLOCK, mask=row_ok[:, None] & (cols < end - BLOCK)[None, :], other=0.0)
        x0, x1 = x0.to(tl.float32), x1.to(tl.float32)
        acc += x0[:, None, :] * x0[None, :, :]  # T_PAD^2 FFMA per column, no shuffles
        acc += x1[:, None, :] * x1[None, :, :]
    gram = tl.sum(acc, axis=2)  # once per program: the cross-thread reduction
    out = partial_ptr + pid * T_PAD * T_PAD + rows[:, None] * T_PAD + rows[None, :]
    tl.store(out, gram)


@triton.jit
def _gram_kernel(
    table_ptr,  # int64[T]: base addresses of the T gradients
    partial_ptr,  # float32[P, T_PAD, T_PAD]: one partial Gram matrix per program
    n_elements,
    blocks_per_program,
    T: tl.constexpr,
    T_PAD: tl.constexpr,  # next power of two >= max(T, 16): tl.dot's smallest tile
    BLOCK: tl.constexpr,
    DTYPE: tl.constexpr,
    ALIGNED: tl.constexpr,  # every gradient starts on a 16-byte boundary (checked by the caller)
):
    pid = tl.program_id(0)
    rows = tl.arange(0, T_PAD)
    row_ok = rows < T
    # [T_PAD] pointers to the start of each task's gradient (padding rows point at 0, masked).
    bases = tl.load(table_ptr + rows, mask=row_ok, other=0).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        # Addresses loaded from memory carry no alignment the compiler can see; the hint
        # turns the tile's loads into 16-byte vector (cp.async) copies.
        bases = tl.multiple_of(bases, 16)
    acc = tl.zeros((T_PAD, T_PAD), dtype=tl.float32)
    first = pid * blocks_per_program
    # Only blocks that exist: BLOCK divides 2^31, so every offset stays <= 2^31 - 1 (int32).
    # (cdiv(n, BLOCK) without forming n + BLOCK - 1, which wraps near 2^31; n >= 1.)
    last = tl.minimum(first + blocks_per_program, (n_elements - 1) // BLOCK + 1)
    for b in range(first, last):
        cols = b * BLOCK + tl.arange(0, BLOCK)
        mask = row_ok[:, None] & (cols[None, :] < n_elements)
        # One [T_PAD, BLOCK] tile: T*BLOCK*s bytes read from memory, each byte once.
        tile = tl.load(bases[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        acc += tl.dot(tile, tl.trans(tile), input_precision="ieee")
    out = partial_ptr + pid * T_PAD * T_PAD + rows[:, None] * T_PAD + rows[None, :]
    tl.store(out, acc)


@triton.jit
def _weighted_sum_kernel(
    table_ptr,  # int64[T]
    weight_ptr,  # float32[T] or float64[T] (rounded to float32 here)
    out_ptr,  # [N] in the gradients' dtype
    n_elements,
    T: tl.constexpr,
    BLOCK: tl.constexpr,
    DTYPE: tl.constexpr,
    ALIGNED: tl.constexpr,  # every gradient starts on a 16-byte boundary (checked by the caller)
):
    pid = tl.program_id(0)
    cols = pid * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_elements
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for t in tl.static_range(T):
        base = tl.load(table_ptr + t).to(tl.pointer_type(DTYPE))
        w = tl.load(weight_ptr + t).to(tl.float32)  # float32 or float64 weights
        ptrs = base + cols
        if ALIGNED:  # as in pass 1: vector loads instead of one element per instruction
            ptrs = tl.multiple_of(ptrs, 16)
        # Read BLOCK*s bytes of task t; accumulate in float32 registers.
        acc += w * tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    # Write BLOCK*s bytes: the only store of the pass.
    tl.store(out_ptr + cols, acc.to(DTYPE), mask=mask)


@triton.jit(do_not_specialize=["n_elements", "blocks_per_program"])
def _gram_float64_kernel(
    table_ptr,  # int64[T]: base addresses of the T gradients
    flag_ptr,  # float64[]: nonzero when pass 1's float32 accumulation left float32's range
    partial_ptr,  # float64[P, T_PAD, T_PAD]: rows < T of one partial Gram matrix per program
    n_elements,
    blocks_per_program,
    T: tl.constexpr,
    T_PAD: tl.constexpr,  # next power of two >= T
    BLOCK: tl.constexpr,
    DTYPE: tl.constexpr,
):
    # Launched after every range-checked pass 1 and done at once unless flagged: the host
    # never has to read the flag, and an unflagged step pays one near-empty launch.
    if tl.load(flag_ptr) == 0.0:
        return
    # Grid (T, P): the T row programs of one run of blocks are adjacent in launch order,
    # so they run together and read the run's tiles from L2: memory traffic stays ~T*N.
    i = tl.program_id(0)  # this program's row of the Gram matrix
    pid = tl.program_id(1)
    rows = tl.arange(0, T_PAD)
    row_ok = rows < T
    bases = tl.load(table_ptr + rows, mask=row_ok, other=0).to(tl.pointer_type(DTYPE))
    base_i = tl.load(table_ptr + i).to(tl.pointer_type(DTYPE))
    acc = tl.zeros((T_PAD, BLOCK), dtype=tl.float64)
    first = pid * blocks_per_program
    last = tl.minimum(first + blocks_per_program, (n_elements - 1) // BLOCK + 1)
    for b in range(first, last):
        cols = b * BLOCK + tl.arange(0, BLOCK)
        col_ok = cols < n_elements
        # Row i against every row, in float64: T + 1 loads of each block per step, the
        # repeats served from L2 (see the grid above).
        mask = row_ok[:, None] & col_ok[None, :]
        tile = tl.load(bases[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float64)
        g_i = tl.load(base_i + cols, mask=col_ok, other=0.0).to(tl.float64)
        acc += tile * g_i[None, :]
    out = partial_ptr + pid * T_PAD * T_PAD + i * T_PAD + rows
    tl.store(out, tl.sum(acc, axis=1))


#: The kernels by name, for tools that compile them ahead of time (resource reports):
#: ``"gram_outer"`` is pass 1 for ``T <= OUTER_MAX_TASKS``, ``"gram"`` above that.
KERNELS = {
    "gram_outer": _gram_outer_kernel,
    "gram": _gram_kernel,
    "weighted_sum": _weighted_sum_kernel,
    "gram_float64": _gram_float64_kernel,
}


def _contiguous(grads: Sequence[Tensor]) -> list[Tensor]:
    return [g if g.is_contiguous() else g.contiguous() for g in grads]


# Offsets are computed in int32 inside the kernels: every offset a kernel forms for a
# block that exists is below n + BLOCK <= 2^31 (BLOCK is a power of two, so the last
# block ends at most at 2^31); tests/test_ops_triton.py checks the arithmetic.
MAX_ELEMENTS = 2**31 - 1


def _check_size(n: int) -> None:
    if n > MAX_ELEMENTS:
        raise ValueError(
            f"the Triton kernels take up to {MAX_ELEMENTS} elements per task gradient "
            f"(int32 offsets), got {n}; use backend='torch'"
        )


def on_device(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Launch on the gradients' GPU: Triton uses the current device's stream (switching
    devices costs two driver calls, skipped when it is already current)."""
    if device.type != "cuda" or device.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def _aligned(grads: Sequence[Tensor]) -> bool:
    """Whether every gradient starts on a 16-byte boundary (fresh allocations do; a view
    with a storage offset may not), so the kernels may use 16-byte vector loads."""
    return all(g.data_ptr() % 16 == 0 for g in grads)


#: Device tables of recent address sets, per (device, stream): the caching allocator
#: hands autograd the same blocks step after step, so in steady training the table of
#: a step is usually already on the device and no copy is needed.
_TABLES: dict[tuple[object, ...], Tensor] = {}
_TABLES_KEPT = 16
_TABLES_LOCK = threading.Lock()


def pointer_table(grads: Sequence[Tensor]) -> Tensor:
    """The gradients' base addresses as an int64 tensor on their device: on CUDA one
    small copy queued without waiting, or none when the same addresses were seen on
    this stream recently (the table's values are the addresses, so it stays valid)."""
    ptrs = [g.data_ptr() for g in grads]
    device = grads[0].device
    if device.type != "cuda":
        return torch.tensor(ptrs, dtype=torch.int64)
    key = (device, torch.cuda.current_stream(device).cuda_stream, *ptrs)
    table = _TABLES.get(key)
    if table is None:
        # Pinned + non_blocking: the copy is queued on the stream, the host never waits.
        host = torch.tensor(ptrs, dtype=torch.int64).pin_memory()
        table = host.to(device, non_blocking=True)
        with _TABLES_LOCK:  # autograd runs each GPU's backward on its own thread
            if len(_TABLES) >= _TABLES_KEPT:
                del _TABLES[next(iter(_TABLES))]  # the oldest
            _TABLES[key] = table
    return table


def _num_programs(n_blocks: int, device: torch.device, per_sm: int = 4) -> int:
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(n_blocks, per_sm * sms))
    return max(1, min(n_blocks, 4))  # the interpreter runs programs one after another


# Pass 1 up to OUTER_MAX_TASKS tasks: the outer-product kernel, one column per thread on
# 4 warps. At T = 8 its 64 accumulators, two 8-value tiles and addresses take ~124
# registers on sm_80/sm_90 with no spills; the loop costs ~2.8 (float32) to ~3.2
# (bfloat16) warp-instructions per column at T = 8 and ~1.1 at T = 4, against ~11.7 for
# the padded tl.dot (tools/triton_resources.py, docs/benchmarks.md).
OUTER_MAX_TASKS = 8
_OUTER_WARPS = 4
# Programs per SM of the outer-product kernel, per T_PAD: as many as fit on an SM at once
# (one wave, no tail), since each warp keeps only two tiles of loads in flight and the
# memory system needs ~20-30 KB in flight per SM. 4-warp programs, 64K registers and 64
# warps per SM: min(16, 512 // registers per thread rounded up to 8); registers from the
# compiled kernels on sm_80/sm_90 (32 at T_PAD <= 2, 40-48 at 4, 122-126 at 8), checked
# by tests/test_triton_compile.py.
OUTER_PROGRAMS_PER_SM = {1: 16, 2: 16, 4: 10, 8: 4}
# Pass 1's (BLOCK, num_warps) per padded task count beyond that: the [T_PAD, BLOCK] tile
# and the [T_PAD, T_PAD] accumulator of one program stay in registers. Chosen by compiling
# for sm_80 and sm_90 in every dtype, for aligned and unaligned gradients
# (tools/triton_resources.py): these sizes spill nothing at 1-128 tasks. At T_PAD = 64
# every block size spills a few values at some task counts (1-5 stores; 128-element blocks
# spill 1,300+), 64 on 8 warps the fewest; T_PAD = 128 needs 8 warps for its 128 x 128
# accumulator. Beyond 128 tasks the accumulator alone outgrows the register file: still
# correct, but it spills.
_GRAM_LAUNCH = {16: (256, 4), 32: (64, 8), 64: (64, 8), 128: (32, 8)}
# Pass 2 loads BLOCK elements of each of the T gradients before adding them up. With
# 16-byte-aligned gradients of a length divisible by 16 the loads are 16-byte vectors;
# T x BLOCK up to 16384 keeps sm_90 at <= ~130 registers per thread (32768 reached 255 at
# T = 64). Otherwise they go element by element, one register (and address) each: at 4096
# values per program sm_90 spilled 2 values in float16 with Triton 3.6 (T = 4, BLOCK =
# 1024) and more at T = 16 with 3.9; 2048 spills nothing with either.
# tools/triton_resources.py checks both.
_SUM_VALUES = {True: 16384, False: 2048}


def gram_launch(t: int) -> tuple[int, int, int]:
    """``(T_PAD, BLOCK, num_warps)`` of pass 1 for ``t`` tasks (compiled kernels): the
    outer-product kernel up to :data:`OUTER_MAX_TASKS` tasks, the ``tl.dot`` one beyond."""
    if t <= OUTER_MAX_TASKS:
        return triton.next_power_of_2(t), 32 * _OUTER_WARPS, _OUTER_WARPS
    t_pad = max(16, triton.next_power_of_2(t))  # tl.dot needs >= 16 rows
    block, num_warps = _GRAM_LAUNCH.get(t_pad, (16, 8))
    return t_pad, block, num_warps


def weighted_sum_launch(t: int, vector_loads: bool = True) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` of pass 2 for ``t`` tasks: 1024-element blocks while
    ``t * BLOCK`` fits the register budget (16 tasks with vector loads, 2 without),
    then halved as ``t`` doubles, down to 128 (one element per thread)."""
    block = 1 << max(7, min(10, (_SUM_VALUES[vector_loads] // t).bit_length() - 1))
    return block, 4


def gram_grid(n_blocks: int, max_programs: int) -> tuple[int, int]:
    """``(programs, blocks_per_program)`` of pass 1: contiguous runs of blocks, as even as
    possible, no program without a block (the last run may be shorter)."""
    per_program = triton.cdiv(n_blocks, max_programs)
    return triton.cdiv(n_blocks, per_program), per_program


def gram_programs(t: int, n_blocks: int, device: torch.device) -> tuple[int, int]:
    """``(programs, blocks_per_program)`` of pass 1 for ``t`` tasks on ``device``."""
    t_pad = gram_launch(t)[0]
    per_sm = OUTER_PROGRAMS_PER_SM[t_pad] if t <= OUTER_MAX_TASKS else 4
    return gram_grid(n_blocks, _num_programs(n_blocks, device, per_sm))


def gram_partials(grads: Sequence[Tensor], table: Tensor) -> Tensor:
    """Pass 1's ``[P, T_PAD, T_PAD]`` float32 partial Gram matrices of contiguous, equally
    shaped gradients of ``n >= 1`` elements whose base addresses are in ``table``
    (:func:`pointer_table`); their sum over the first dimension is the Gram matrix."""
    t, n = len(grads), grads[0].numel()
    device = grads[0].device
    _check_size(n)
    t_pad, block, num_warps = gram_launch(t)
    outer = t <= OUTER_MAX_TASKS
    if triton_interpreting() and not outer:
        block = 64
    n_blocks = triton.cdiv(n, block)
    programs, per_program = gram_programs(t, n_blocks, device)
    partial = torch.empty(programs, t_pad, t_pad, dtype=torch.float32, device=device)
    dtype = _TL_DTYPES[grads[0].dtype]
    with on_device(device):
        if outer:
            _gram_outer_kernel[(programs,)](
                table, partial, n, per_program,
                T=t, T_PAD=t_pad, BLOCK=block, DTYPE=dtype, num_warps=num_warps,
            )  # fmt: skip
        else:
            _gram_kernel[(programs,)](
                table, partial, n, per_program,
                T=t, T_PAD=t_pad, BLOCK=block, DTYPE=dtype,
                ALIGNED=_aligned(grads), num_warps=num_warps,
            )  # fmt: skip
    return partial


#: Float64 values of one program's ``[T_PAD, BLOCK]`` accumulator in
#: :func:`gram_float64_partials_if`: 72-96 registers per thread on sm_80/sm_90 at 3-100
#: tasks, no spills (tools/triton_resources.py --kernels gram_float64).
_FLOAT64_TILE = 2048


def gram_float64_launch(t: int) -> tuple[int, int, int]:
    """``(T_PAD, BLOCK, num_warps)`` of the float64 pass 1 for ``t`` tasks."""
    t_pad = triton.next_power_of_2(t)
    return t_pad, max(16, min(1024, _FLOAT64_TILE // t_pad)), 4


def gram_float64_partials_if(grads: Sequence[Tensor], table: Tensor, flag: Tensor) -> Tensor:
    """``[P, T_PAD, T_PAD]`` float64 partial Gram matrices of the gradients (as
    :func:`gram_partials`, accumulated in float64), computed only if the one-element
    float64 device tensor ``flag`` is nonzero when the kernel runs; otherwise the result
    is left unwritten. Rows ``>= T`` are never written (columns ``>= T`` of the others are
    zeros)."""
    t, n = len(grads), grads[0].numel()
    device = grads[0].device
    _check_size(n)
    t_pad, block, num_warps = gram_float64_launch(t)
    if triton_interpreting():
        block = 64
    n_blocks = triton.cdiv(n, block)
    programs, per_program = gram_grid(n_blocks, _num_programs(n_blocks, device, per_sm=1))
    partial = torch.empty(programs, t_pad, t_pad, dtype=torch.float64, device=device)
    with on_device(device):
        _gram_float64_kernel[(t, programs)](
            table, flag, partial, n, per_program,
            T=t, T_PAD=t_pad, BLOCK=block, DTYPE=_TL_DTYPES[grads[0].dtype],
            num_warps=num_warps,
        )  # fmt: skip
    return partial


def gram_triton(grads: Sequence[Tensor]) -> Tensor:
    """Pass 1: float32 Gram matrix of equally shaped gradients."""
    grads = _contiguous(grads)
    t, n = len(grads), grads[0].numel()
    if n == 0:
        return torch.zeros(t, t, dtype=torch.float32, device=grads[0].device)
    partial = gram_partials(grads, pointer_table(grads))
    return partial.sum(dim=0)[:t, :t]


def weighted_sum_into(
    grads: Sequence[Tensor], weights: Tensor, table: Tensor, out: Tensor
) -> Tensor:
    """Pass 2 into ``out`` (``[N]``, the gradients' dtype and device): contiguous, equally
    shaped gradients of ``n >= 1`` elements with their addresses in ``table``, and
    contiguous float32 or float64 ``weights`` on their device."""
    n, dtype, device = grads[0].numel(), grads[0].dtype, grads[0].device
    _check_size(n)
    aligned = _aligned(grads)
    # Loads are vectors only if the mask `cols < n` is uniform over a vector, which the
    # compiler knows when Triton specialises n as divisible by 16; otherwise they go
    # element by element and need the smaller register budget.
    block, num_warps = weighted_sum_launch(len(grads), aligned and n % 16 == 0)
    if triton_interpreting():
        block = 256
    with on_device(device):
        _weighted_sum_kernel[(triton.cdiv(n, block),)](
            table, weights, out, n, T=len(grads), BLOCK=block, DTYPE=_TL_DTYPES[dtype],
            ALIGNED=aligned, num_warps=num_warps,
        )  # fmt: skip
    return out


def weighted_sum_triton(grads: Sequence[Tensor], weights: Tensor) -> Tensor:
    """Pass 2: ``sum_t weights[t] * grads[t]`` in the gradients' dtype."""
    grads = _contiguous(grads)
    n, dtype, device = grads[0].numel(), grads[0].dtype, grads[0].device
    out = torch.empty(n, dtype=dtype, device=device)
    if n == 0:
        return out.view(grads[0].shape)
    w = weights.to(device=device, dtype=torch.float32).contiguous()
    weighted_sum_into(grads, w, pointer_table(grads), out)
    return out.view(grads[0].shape)
