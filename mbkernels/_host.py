"""The fork's backward for CPU gradients with the statistics and the rule on the host.

On a CPU the ``[T, T]`` Gram matrix (or its diagonal) of pass 1 is already in host
memory: reading it into Python costs no synchronisation, and a rule over T numbers
costs a few microseconds as Python float arithmetic, where the same rule as tensor
ops is dozens of dispatches of ~2–7 µs each (on the small models of the course that
was most of the balancer's cost; `benchmarks/small.py` in the repository).

:class:`~mbkernels.Balancer` takes this path when the gradients and its buffers are
on the CPU, every task has a gradient, the rule has a host implementation
(:meth:`~mbkernels.rules.Rule.host_weights`), the non-finite policy is
``"skip_update"`` or ``"raise"``, and there is no GradScaler, Gram reduction or
process group to all-reduce over. It takes the step only when everything is finite
and inside float32's range: any other step returns ``None`` from here and runs the
general tensor path from the start, which refuses, repairs or raises exactly as it
always does. Results are bit-identical to the tensor path (same float64 operations
in the same order; ``tests/test_host_path.py``).
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .ops.torch_ops import (
    CPU_SUM_CHUNK,
    NORM_ROW,
    _fit_weights,
    gram_torch,
    sq_norms_torch,
    weighted_sum_torch,
)

#: float32's largest finite value and the per-element underflow bound of
#: :mod:`mbkernels.numerics` (the same range check, done on host floats).
FLOAT32_MAX = torch.finfo(torch.float32).max
UNDERFLOW_PER_ELEMENT = 2.0**-125


def pass1(grads: Sequence[Tensor], cross_terms: bool) -> Tensor:
    """The Gram matrix (``cross_terms``) or the squared norms, as the tensor path's pass 1
    computes them on the CPU (float32 accumulation; float64 for float64 gradients)."""
    return gram_torch(grads) if cross_terms else sq_norms_torch(grads)


def norms_small(grads: Sequence[Tensor]) -> list[float] | None:
    """The squared norms of gradients under ``NORM_ROW`` elements each as host floats,
    bit for bit :func:`~mbkernels.ops.torch_ops.sq_norms_torch`'s (which stacks them, takes
    one ``vector_norm`` per row and squares in the accumulation dtype). ``None`` for larger,
    non-contiguous or other than float32 gradients."""
    g = grads[0]
    if g.numel() >= NORM_ROW or g.dtype != torch.float32:
        return None
    if not all(map(Tensor.is_contiguous, grads)):  # strided: reduced in another order
        return None
    # One call, one reduction per gradient as it lies: no [T, N] copy. Each is the same
    # contiguous float32 reduction as a row of the stacked tensor (tests/test_host_path.py)
    norms = [n.item() for n in torch._foreach_norm(list(grads), 2, dtype=torch.float32)]
    # float32 square: the float64 product of two float32 numbers is exact, so one
    # rounding to float32 gives what the float32 multiplication gives
    return to_float32([x * x for x in norms])


def pass2(grads: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """``sum_t w_t g_t`` with host weights: :func:`~mbkernels.ops.torch_ops.weighted_sum_torch`,
    bit for bit. For contiguous float32 gradients in one chunk whose weights fit float32
    it runs the same ops on the gradients as they are (element-wise ops on contiguous
    tensors visit the elements as on their flat views), without the reshapes, the
    output's allocation and view: one multiplication and T - 1 ``add_``."""
    g0 = grads[0]
    if g0.dtype != torch.float32 or g0.numel() > CPU_SUM_CHUNK or g0.numel() == 0:
        return weighted_sum_torch(grads, weights)
    w, shift = _fit_weights(list(weights), torch.float32)
    if shift != 1.0 or not all(map(Tensor.is_contiguous, grads)):
        return weighted_sum_torch(grads, weights)
    out = torch.mul(g0, w[0])
    for g, wt in zip(grads[1:], w[1:]):
        out.add_(g, alpha=wt)
    return out


def to_float32(values: Sequence[float]) -> list[float]:
    """Round to float32 and back, as ``tensor.to(torch.float32)`` does (nearest-even;
    beyond float32's range: inf)."""
    return array("f", values).tolist()


def underflow_bound(numel: int) -> float:
    """The range check's lower bound ``numel * 2**-125`` as the float32 number the tensor
    path compares with (``clamp`` casts its bound to the tensor's dtype). Below 2**24
    elements it is a float32 number already (an integer of 24 bits times a power of two)."""
    bound = numel * UNDERFLOW_PER_ELEMENT
    return bound if numel < 1 << 24 else to_float32([bound])[0]


def in_float32_range(diag: Sequence[float], low: float) -> bool:
    """Every entry of ``diag`` (finite numbers) is in ``[low, FLOAT32_MAX]``: no float64
    recomputation."""
    return low <= min(diag) and max(diag) <= FLOAT32_MAX


# Per thread, per length: a float64 tensor and the NumPy view of its memory.
_scratch = threading.local()


def float64_op(values: Sequence[float], op: Callable[[Tensor], object]) -> list[float]:
    """``values`` after ``op`` ran in place on them as a contiguous float64 CPU tensor of
    their length: torch's own element-wise results (its vectorised ``sqrt`` and ``pow``
    are not always libm's, so a host rule that must match a tensor rule bit for bit
    calls the same op). The tensor is reused, so the values go in and out through
    NumPy: no tensor is created."""
    cache: dict[int, tuple[Tensor, Any]] | None = getattr(_scratch, "by_length", None)
    if cache is None:
        cache = _scratch.by_length = {}
    pair = cache.get(len(values))
    if pair is None:
        tensor = torch.empty(len(values), dtype=torch.float64)
        pair = cache[len(values)] = (tensor, tensor.numpy())
    tensor, view = pair
    view[:] = values
    op(tensor)
    out: list[float] = view.tolist()
    return out
