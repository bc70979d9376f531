"""A Gram matrix with the range of float64, at the cost of float32 in the common case.

Pass 1 accumulates ``G_ij = <g_i, g_j>`` in float32 (the fast kernels). The
squares of the gradient elements can leave float32's range even when every
gradient is finite and representable:

* bfloat16/float32 elements above about ``1e19`` square to ``inf``;
* elements below about ``1e-19`` square to subnormals or to 0, so the norm
  is inaccurate or 0 (and the task would silently get the weight of a task
  with no gradient).

:func:`range_safe_gram` checks the float32 diagonal and, only when some entry
is non-finite or below ``numel * 2**-125`` (where subnormal rounding could
cost more than one float32 ulp of relative accuracy), recomputes the Gram
matrix in float64 (exponent range 1e±308: every square of a finite float32 or
bfloat16 number, and every product of two, is a normal float64). float16
gradients never need this (their squares are normal float32 numbers) and
float64 gradients are accumulated in float64 already.

Here the check reads one boolean from the device per step (on CUDA a small
synchronisation); the GPU device path (:mod:`mbkernels._device`) makes the same
decision on the device instead, with launches predicated on the flag, and reads
nothing. ``Balancer(range_check=False)`` skips the check, and then an overflowing
Gram matrix is treated like a non-finite gradient (:mod:`mbkernels.nonfinite`).

The result is always float64, so the rule runs in float64 whatever the path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from . import ops
from .ops import torch_ops

#: float32's smallest normal number is 2**-126; one below it per element is the bound.
UNDERFLOW_PER_ELEMENT = 2.0**-125
FLOAT32_MAX = torch.finfo(torch.float32).max


def gram_float64(grads: Sequence[Tensor]) -> Tensor:
    """``G_ij = <g_i, g_j>`` accumulated in float64 (the PyTorch pass 1, chunked on CPU)."""
    return torch_ops.gram_torch(grads, torch.float64)


def sq_norms_float64(grads: Sequence[Tensor]) -> Tensor:
    """``[T]`` squared norms accumulated in float64 (the PyTorch norms-only pass 1)."""
    return torch_ops.sq_norms_torch(grads, torch.float64)


def needs_float64(gram: Tensor, numel: int) -> Tensor:
    """0-d bool: the float32 Gram ``gram`` of gradients with ``numel`` elements may be
    inaccurate (a non-finite or underflowing diagonal entry)."""
    return _diagonal_needs_float64(gram.diagonal(), numel)


def _diagonal_needs_float64(diag: Tensor, numel: int) -> Tensor:
    # In range: numel * 2^-125 <= d <= float32's max. Clamping into that interval
    # changes every entry outside it, inf and NaN included (NaN != NaN): two tiny ops.
    return (diag.clamp(numel * UNDERFLOW_PER_ELEMENT, FLOAT32_MAX) != diag).any()


def _range_safe(
    fast: Tensor, grads: Sequence[Tensor], exact: Callable[[Sequence[Tensor]], Tensor], check: bool
) -> Tensor:
    """``fast`` (a float32 Gram matrix or its diagonal) in float64, or ``exact(grads)``
    when its diagonal left float32's range. float16 squares are always normal float32
    numbers and float64 gradients are accumulated in float64 already: no check."""
    diag = fast.diagonal() if fast.dim() == 2 else fast
    dtype = grads[0].dtype
    if check and dtype not in (torch.float16, torch.float64):
        if bool(_diagonal_needs_float64(diag, grads[0].numel())):
            return exact(grads)
    return fast.to(torch.float64)


def range_safe_gram(grads: Sequence[Tensor], backend: str = "auto", check: bool = True) -> Tensor:
    """The float64 ``[T, T]`` Gram matrix of ``grads``: the fast pass 1, recomputed in
    float64 only when its float32 accumulation left float32's range (module docstring)."""
    return _range_safe(ops.gram(grads, backend), grads, gram_float64, check)


def range_safe_sq_norms(
    grads: Sequence[Tensor], backend: str = "auto", check: bool = True
) -> Tensor:
    """The float64 ``[T]`` squared norms (Gram diagonal) of ``grads``, with the same
    float64 fallback as :func:`range_safe_gram`."""
    return _range_safe(ops.sq_norms(grads, backend), grads, sq_norms_float64, check)
