"""The MultiBalance step between the two passes as one Triton program.

On a GPU the rule itself is a few dozen float64 operations on ``[T]`` vectors. As
PyTorch ops each one is a kernel launch and a few microseconds of host work, about
1 ms per step in all, while the GPU waits. Here the whole step, from pass 1's
partial Gram matrices to the weights pass 2 applies, is one program of ``T_PAD``
lanes:

* sum the ``P`` partial Gram matrices of pass 1 in float64 (``P * T_PAD**2 * 4``
  bytes read, a few hundred KB at most), divide by the loss scale squared;
* the range flag: a diagonal entry outside ``[numel * 2**-125, float32 max]``
  (float32 accumulation may have over- or underflowed, :mod:`mbkernels.numerics`).
  The host does not read it: the same program runs a second time, predicated on the
  flag, on float64 partials that :func:`~mbkernels.ops.triton_ops.gram_float64_partials_if`
  computes only for a flagged step, and rewrites the proposal; an unflagged step pays
  two launches that return at once;
* the rule (:class:`~mbkernels.rules.MultiBalanceRule`), operation for operation
  as its tensor code does it, in float64, with floating-point contraction off so
  that every product and sum is rounded as PyTorch rounds it;
* the ``"skip_update"`` policy: a non-finite Gram matrix, weight or EMA keeps the
  old state and the last weights, and counts a refused step.

Everything it computes goes to one fresh float64 ``record`` (:class:`RecordLayout`):
the proposed state, the weights to apply, and the statistics. Nothing in the
balancer's buffers changes until :func:`commit` copies the proposal into them, once
pass 2 has been queued: the same propose-then-commit order as the tensor path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.language.extra import libdevice

from ..rules.multibalance import REFERENCES, MultiBalanceRule
from .backend import triton_interpreting

#: float32's largest finite value and the per-element underflow bound of
#: :mod:`mbkernels.numerics` (both exact in float32, so exact as kernel constants).
FLOAT32_MAX = tl.constexpr(torch.finfo(torch.float32).max)
UNDERFLOW_PER_ELEMENT = tl.constexpr(2.0**-125)


@dataclass(frozen=True)
class RecordLayout:
    """Offsets into the float64 record of one step (``T*T + 4*T + 4`` values):
    the Gram matrix, the weights applied, the EMA and update counts after the step,
    the norms, then the step count, the refused streak, the finite flag and the range
    flag (1.0: pass 1's float32 diagonal left float32's range, and with the range check
    the step was then recomputed from a float64 Gram matrix; 0.0). Integers are exact in
    float64 up to 2**53."""

    t: int

    @property
    def weights(self) -> int:
        return self.t * self.t

    @property
    def ema(self) -> int:
        return self.weights + self.t

    @property
    def count(self) -> int:
        return self.ema + self.t

    @property
    def norms(self) -> int:
        return self.count + self.t

    @property
    def step(self) -> int:
        return self.norms + self.t

    @property
    def streak(self) -> int:
        return self.step + 1

    @property
    def finite(self) -> int:
        return self.step + 2

    @property
    def range_flag(self) -> int:
        return self.step + 3

    @property
    def size(self) -> int:
        return self.step + 4


@triton.jit
def _isfinite(x):
    return x - x == 0  # inf - inf and NaN - NaN are NaN


@triton.jit(do_not_specialize=["num_parts", "part_stride", "row_stride", "numel"])
def _multibalance_step_kernel(
    gram_ptr,  # [P, T_PAD, T_PAD] float32 partials of pass 1, or [1, T, T] float64
    num_parts,
    part_stride,
    row_stride,
    scale_ptr,  # float32 []: the loss scale (HAS_SCALE)
    params_ptr,  # float64 [5]: beta, 1 - beta, relax, 1 - relax, eps
    ema_ptr,  # float32 [T]: the state now (read only)
    count_ptr,  # int64 [T]
    step_ptr,  # int64 []
    weights_ptr,  # float64 [T]
    streak_ptr,  # int64 []
    record_ptr,  # float64 [RecordLayout.size]: everything this step proposes
    numel,  # elements per gradient: the range flag's underflow bound
    flag_ptr,  # float64 []: the range flag of pass 1 (PREDICATED)
    T: tl.constexpr,
    T_PAD: tl.constexpr,
    REFERENCE: tl.constexpr,  # 0 target, 1 mean, 2 max
    TARGET: tl.constexpr,
    BIAS_CORRECTION: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    LIBDEVICE: tl.constexpr,  # compiled (not the interpreter)
    PREDICATED: tl.constexpr,  # the float64 rerun: only if pass 1 was flagged
):
    if PREDICATED:
        # The float64 Gram matrix of a flagged step replaces the float32 one: the whole
        # proposal is rewritten, except the range flag, which stays set (recomputed).
        if tl.load(flag_ptr) == 0.0:
            return
    rows = tl.arange(0, T_PAD)
    ok = rows < T
    both = ok[:, None] & ok[None, :]
    eye = rows[:, None] == rows[None, :]
    # The Gram matrix: P partials of T_PAD^2 float32 values, summed in float64.
    offsets = rows[:, None] * row_stride + rows[None, :]
    gram = tl.zeros((T_PAD, T_PAD), dtype=tl.float64)
    for p in range(0, num_parts):
        part = tl.load(gram_ptr + p * part_stride + offsets, mask=both, other=0.0)
        gram += part.to(tl.float64)
    # The range flag reads the gradients' own (scaled) magnitudes, as numerics does.
    local = tl.sum(tl.where(eye, gram, 0.0), axis=1)
    low = numel.to(tl.float64) * UNDERFLOW_PER_ELEMENT
    in_range = (local >= low) & (local <= FLOAT32_MAX)  # False for NaN
    out_of_range = tl.sum(tl.where(ok & ~in_range, 1, 0), axis=0) > 0
    if HAS_SCALE:
        s = tl.load(scale_ptr).to(tl.float64)
        gram = gram / (s * s)
    diag = tl.sum(tl.where(eye, gram, 0.0), axis=1)
    gram_finite = tl.sum(tl.where(both & ~_isfinite(gram), 1, 0)) == 0  # over both axes

    # The rule on the cleaned diagonal (non-finite entries read as 0, as nan_to_num).
    beta = tl.load(params_ptr)
    one_minus_beta = tl.load(params_ptr + 1)
    relax = tl.load(params_ptr + 2)
    one_minus_relax = tl.load(params_ptr + 3)
    eps = tl.load(params_ptr + 4)
    clean = tl.where(_isfinite(diag), diag, 0.0)
    norms = tl.sqrt(tl.maximum(clean, 0.0))
    old_ema = tl.load(ema_ptr + rows, mask=ok, other=0.0)
    old_count = tl.load(count_ptr + rows, mask=ok, other=0)
    ema = beta * old_ema.to(tl.float64) + one_minus_beta * norms
    count = old_count + 1
    m = ema
    if BIAS_CORRECTION:
        c = count.to(tl.float64)
        if LIBDEVICE:  # CUDA's pow, the one PyTorch's float64 pow calls
            power = libdevice.pow(tl.zeros((T_PAD,), tl.float64) + beta, c)  # same shapes
        else:  # the interpreter has no libdevice: within a few ulp of pow
            power = tl.exp2(c * tl.log2(beta))
        m = ema / (1.0 - power)
    m = tl.where(ok, m, 0.0)
    if REFERENCE == 0:
        ref = tl.sum(tl.where(rows == TARGET, m, 0.0), axis=0)
    elif REFERENCE == 1:
        ref = tl.sum(m, axis=0) / T
    else:
        ref = tl.max(m, axis=0)
    scaled = relax * ref
    w = tl.where(m > 0, scaled / (m + eps) + one_minus_relax, 1.0)
    ema32 = ema.to(tl.float32)
    results_finite = tl.sum(tl.where(ok & ~(_isfinite(w) & _isfinite(ema32)), 1, 0), axis=0) == 0
    finite = gram_finite & results_finite

    # "skip_update": a step with anything non-finite keeps the state and the last weights.
    old_weights = tl.load(weights_ptr + rows, mask=ok, other=0.0)
    old_step = tl.load(step_ptr)
    old_streak = tl.load(streak_ptr)
    applied = tl.where(finite, w, old_weights)
    new_ema = tl.where(finite, ema32, old_ema)
    new_count = tl.where(finite, count, old_count)
    new_step = tl.where(finite, old_step + 1, old_step)
    new_streak = tl.where(finite, 0, old_streak + 1)

    # The record (RecordLayout); the statistics' norms come from the Gram matrix as is.
    tl.store(record_ptr + rows[:, None] * T + rows[None, :], gram, mask=both)
    base = T * T
    tl.store(record_ptr + base + rows, applied, mask=ok)
    tl.store(record_ptr + base + T + rows, new_ema.to(tl.float64), mask=ok)
    tl.store(record_ptr + base + 2 * T + rows, new_count.to(tl.float64), mask=ok)
    tl.store(record_ptr + base + 3 * T + rows, tl.sqrt(tl.maximum(diag, 0.0)), mask=ok)
    tail = base + 4 * T
    tl.store(record_ptr + tail, new_step.to(tl.float64))
    tl.store(record_ptr + tail + 1, new_streak.to(tl.float64))
    tl.store(record_ptr + tail + 2, tl.where(finite, 1.0, 0.0).to(tl.float64))
    if not PREDICATED:
        tl.store(record_ptr + tail + 3, tl.where(out_of_range, 1.0, 0.0).to(tl.float64))


@triton.jit
def _commit_kernel(
    record_ptr,  # float64 [RecordLayout.size]
    ema_ptr,  # float32 [T]
    count_ptr,  # int64 [T]
    step_ptr,  # int64 []
    weights_ptr,  # float64 [T]
    streak_ptr,  # int64 []
    T: tl.constexpr,
    T_PAD: tl.constexpr,
):
    rows = tl.arange(0, T_PAD)
    ok = rows < T
    base = T * T
    tl.store(weights_ptr + rows, tl.load(record_ptr + base + rows, mask=ok), mask=ok)
    ema = tl.load(record_ptr + base + T + rows, mask=ok)
    tl.store(ema_ptr + rows, ema.to(tl.float32), mask=ok)
    count = tl.load(record_ptr + base + 2 * T + rows, mask=ok)
    tl.store(count_ptr + rows, count.to(tl.int64), mask=ok)
    tail = base + 4 * T
    tl.store(step_ptr, tl.load(record_ptr + tail).to(tl.int64))
    tl.store(streak_ptr, tl.load(record_ptr + tail + 1).to(tl.int64))


#: The programs by name, for tools that compile them ahead of time (as
#: :data:`~mbkernels.ops.triton_ops.KERNELS`).
KERNELS = {"multibalance_step": _multibalance_step_kernel, "commit": _commit_kernel}


def rule_params(rule: MultiBalanceRule, device: torch.device) -> Tensor:
    """The rule's float hyperparameters as a float64 device tensor (Triton would pass
    Python floats as float32): beta, 1 - beta, relax, 1 - relax, eps, each computed in
    Python floats as the tensor code computes them."""
    beta, relax = rule.beta, rule.relax
    values = torch.tensor([beta, 1.0 - beta, relax, 1.0 - relax, rule.eps], dtype=torch.float64)
    if device.type != "cuda":
        return values.to(device)
    # pinned + non_blocking: queued on the stream, the host does not wait (a plain
    # host-to-device copy of pageable memory would synchronise)
    return values.pin_memory().to(device, non_blocking=True)


def multibalance_step(
    gram: Tensor,
    scale: Tensor | None,
    params: Tensor,
    rule: MultiBalanceRule,
    state: dict[str, Tensor],
    numel: int,
    redo: Tensor | None = None,
) -> Tensor:
    """One proposed step: ``gram`` is pass 1's ``[P, T_PAD, T_PAD]`` float32 or float64
    partials or a ``[T, T]`` float64 Gram matrix; ``state`` the buffers ``ema``,
    ``count``, ``step``, ``weights``, ``refused_streak`` (read, not written). Returns the
    record. With ``redo`` (an earlier step's record) the step is proposed again into that
    record, from ``gram``, if and only if its range flag is set when the kernel runs:
    the float64 recomputation of a flagged step, decided on the device."""
    t = rule.num_tasks
    if gram.dim() == 2:
        gram = gram.reshape(1, t, t)
    layout = RecordLayout(t)
    if redo is None:
        record = torch.empty(layout.size, dtype=torch.float64, device=gram.device)
        flag = record  # not read
    else:
        record, flag = redo, redo[layout.range_flag :]
    scale_arg = scale if scale is not None else params  # not read without a scale
    _multibalance_step_kernel[(1,)](
        gram, gram.shape[0], gram.stride(0), gram.stride(1), scale_arg, params,
        state["ema"], state["count"], state["step"], state["weights"], state["refused_streak"],
        record, numel, flag,
        T=t, T_PAD=triton.next_power_of_2(t), REFERENCE=REFERENCES.index(rule.reference),
        TARGET=rule.target, BIAS_CORRECTION=rule.bias_correction, HAS_SCALE=scale is not None,
        LIBDEVICE=not triton_interpreting(), PREDICATED=redo is not None,
        enable_fp_fusion=False,
    )  # fmt: skip
    return record


def commit(record: Tensor, state: dict[str, Tensor]) -> None:
    """Copy a proposed step's state from ``record`` into the buffers."""
    t = state["ema"].numel()
    _commit_kernel[(1,)](
        record, state["ema"], state["count"], state["step"], state["weights"],
        state["refused_streak"], T=t, T_PAD=triton.next_power_of_2(t),
    )  # fmt: skip
