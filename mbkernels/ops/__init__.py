"""The fused balancing step: pass 1 (Gram matrix) and pass 2 (weighted sum).

Two implementations with one signature each: ``torch_ops`` (CPU, and the
reference) and ``triton_ops`` (CUDA, or CPU through ``TRITON_INTERPRET=1``).
``gram`` and ``weighted_sum`` dispatch between them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .backend import BACKENDS, Backend, resolve_backend, triton_available, triton_interpreting
from .torch_ops import accumulation_dtype, gram_torch, sq_norms_torch, weighted_sum_torch

__all__ = [
    "BACKENDS",
    "Backend",
    "accumulation_dtype",
    "gram",
    "gram_torch",
    "resolve_backend",
    "sq_norms",
    "sq_norms_torch",
    "triton_available",
    "triton_interpreting",
    "weighted_sum",
    "weighted_sum_torch",
]


def _check_grads(grads: Sequence[Tensor]) -> None:
    """The passes read every gradient over the first one's length, in its dtype, on its
    device: anything else would be read wrongly, so it is refused (a few µs per call)."""
    if len(grads) == 0:
        raise ValueError("grads must hold at least one tensor, got an empty sequence")
    first = grads[0]
    if not isinstance(first, Tensor):
        raise TypeError(f"grads[0] must be a torch.Tensor, got {type(first).__name__}")
    shape, dtype, device = first.shape, first.dtype, first.device
    for i, g in enumerate(grads):
        if not isinstance(g, Tensor):
            raise TypeError(f"grads[{i}] must be a torch.Tensor, got {type(g).__name__}")
        if g.shape != shape or g.dtype != dtype or g.device != device:
            raise ValueError(
                f"grads must share one shape, dtype and device: grads[0] is "
                f"{tuple(shape)} {dtype} on {device}, grads[{i}] is "
                f"{tuple(g.shape)} {g.dtype} on {g.device}"
            )


def gram(grads: Sequence[Tensor], backend: str = "auto") -> Tensor:
    """Pass 1: ``G_ij = <g_i, g_j>`` of equally shaped tensors, float32 (float64 for float64)."""
    _check_grads(grads)
    if resolve_backend(backend, grads[0].device, grads[0].dtype) == "triton":
        from .triton_ops import gram_triton

        return gram_triton(grads)
    return gram_torch(grads)


def sq_norms(grads: Sequence[Tensor], backend: str = "auto") -> Tensor:
    """Pass 1 for rules that read only the norms: ``[T]`` values ``<g_t, g_t>``.

    On the PyTorch path this is ``T`` dot products instead of the Gram matrix's
    ``T(T+1)/2``. The Triton path returns the full Gram kernel's diagonal: on a GPU
    the pass is bound by reading the gradients once, so the off-diagonal is free.
    """
    _check_grads(grads)
    if resolve_backend(backend, grads[0].device, grads[0].dtype) == "triton":
        from .triton_ops import gram_triton

        return gram_triton(grads).diagonal().clone()
    return sq_norms_torch(grads)


def weighted_sum(grads: Sequence[Tensor], weights: Tensor, backend: str = "auto") -> Tensor:
    """Pass 2: ``sum_t weights[t] * grads[t]``, accumulated in float32, in the input dtype."""
    _check_grads(grads)
    if not isinstance(weights, Tensor) or weights.shape != (len(grads),):
        got = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(
            f"weights must be a [{len(grads)}] tensor, one weight per gradient, got {got}"
        )
    if resolve_backend(backend, grads[0].device, grads[0].dtype) == "triton":
        from .triton_ops import weighted_sum_triton

        return weighted_sum_triton(grads, weights)
    return weighted_sum_torch(grads, weights)
