"""The fused step's two passes in plain PyTorch (the CPU path and the reference).

No ``[T, N]`` copy of the gradients is ever made:

* pass 1, full Gram matrix: copies one chunk of every gradient into a
  ``[T, chunk]`` scratch buffer (cache resident) and accumulates
  ``G += C @ C.T`` with BLAS;
* pass 1, norms only (for rules that read only the Gram diagonal): the
  squared norm ``<g_t, g_t>`` of each task, ``T`` products instead of ``T(T+1)/2``;
* pass 2 writes ``out = sum_t w_t * g_t`` into the output, ``w_t`` as host
  scalars when the weights live on the CPU.

Memory traffic: pass 1 reads ``T*N`` elements, pass 2 reads ``T*N`` and writes
``N``: ``(2T + 1) * N * itemsize`` bytes, the minimum for any two-pass method
(weights depend on the whole Gram matrix, so the gradients must be read twice
unless all of them fit in cache). A naive composition (``torch.stack``, norms,
weighted sum with broadcasting) moves about ``(6T + 1) * N`` elements.

On a CPU the full Gram matrix is not memory-bound: ``T^2`` multiply-adds per
element against ``T`` loads (at T = 8 and N = 2^19, 3.3 ms against 0.35 ms for
the norms alone on one core of the development machine), which is why the
norms-only pass exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# Elements per task per chunk of pass 1's scratch. 2**16 float32 values * 8 tasks
# = 2 MiB: inside L2/L3 on CPUs; on GPUs the chunk is irrelevant (one chunk).
CPU_CHUNK = 1 << 16
# Row length of the norms-only pass 1 (for accuracy; see sq_norms_torch).
NORM_ROW = 1 << 14
# Pass 2's chunk. Measured on one core (T = 8, float32): per-op overhead dominates
# below ~2**18 and the output stops fitting in cache above ~2**20; 2**20 was within
# 10% of the best chunk for every N from 2**16 to 2**24.
CPU_SUM_CHUNK = 1 << 20


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Statistics are kept in float32, or float64 for float64 gradients."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunk(n: int, device: torch.device, cpu_chunk: int = CPU_CHUNK) -> int:
    """Elements per chunk: ``cpu_chunk`` on CPU (cache), everything at once elsewhere."""
    return n if device.type != "cpu" else min(n, cpu_chunk)


def gram_torch(grads: Sequence[Tensor], acc: torch.dtype | None = None) -> Tensor:
    """Gram matrix ``G_ij = <g_i, g_j>`` of equally shaped gradients, accumulated in ``acc``
    (default :func:`accumulation_dtype`: float32, or float64 for float64 gradients)."""
    flat = [g.reshape(-1) for g in grads]
    t, n = len(flat), flat[0].numel()
    acc = acc or accumulation_dtype(flat[0].dtype)
    device = flat[0].device
    gram = torch.zeros(t, t, dtype=acc, device=device)
    if n == 0:
        return gram
    chunk = _chunk(n, device)
    scratch = torch.empty(t, chunk, dtype=acc, device=device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = scratch[:, : stop - start]
        for i, g in enumerate(flat):
            block[i].copy_(g[start:stop])
        gram.addmm_(block, block.T)
    return gram


def sq_norms_torch(grads: Sequence[Tensor], acc: torch.dtype | None = None) -> Tensor:
    """``[T]`` squared norms ``<g_t, g_t>`` (the Gram diagonal), accumulated in ``acc``
    (default as :func:`gram_torch`).

    Per task, one ``vector_norm`` over rows of ``NORM_ROW`` elements (float32
    accumulation, float16/bfloat16 upcast on the fly) written into a ``[T, rows]``
    buffer whose squares are summed; the tails (under ``NORM_ROW`` elements each)
    are stacked and reduced together. The rows are for accuracy at no extra cost:
    over 2^19 random float32 elements one dot product (or one ``vector_norm``) was
    off by up to 5e-6 relative, 2^14-element rows by 2e-7 (the full Gram path:
    2e-6), both ~0.06 ms per 2 MiB task gradient on one core. Per task it is three
    dispatches (``view``, the buffer's row, the reduction): at T = 8 the fixed cost
    is what a backward of a small model notices.
    """
    flat = [g.reshape(-1) for g in grads]
    t, n, device = len(flat), flat[0].numel(), flat[0].device
    acc = acc or accumulation_dtype(flat[0].dtype)
    rows = n // NORM_ROW
    head = rows * NORM_ROW
    sq = torch.zeros(t, dtype=acc, device=device)
    if rows:  # per task one reduction into its row of a [T, rows] buffer: few dispatches
        row_norms = torch.empty(t, rows, dtype=acc, device=device)
        for i, f in enumerate(flat):
            x = (f if head == n else f[:head]).view(rows, NORM_ROW)
            torch.linalg.vector_norm(x, dim=1, dtype=acc, out=row_norms[i])
        sq += row_norms.square().sum(dim=1)
    if head < n:  # the tails (all of a small gradient): under NORM_ROW elements each
        tails = torch.stack([f[head:] for f in flat])
        sq += torch.linalg.vector_norm(tails, dim=1, dtype=acc).square()
    return sq


def weighted_sum_torch(grads: Sequence[Tensor], weights: Tensor | Sequence[float]) -> Tensor:
    """``sum_t weights[t] * grads[t]`` accumulated in float32, returned in the gradients' dtype.
    ``weights``: a ``[T]`` tensor, or ``T`` Python floats (the balancer's host path)."""
    flat = [g.reshape(-1) for g in grads]
    n, dtype, device = flat[0].numel(), flat[0].dtype, flat[0].device
    acc = accumulation_dtype(dtype)
    out = torch.empty(n, dtype=dtype, device=device)
    if n == 0:
        return out.view(grads[0].shape)
    # CPU weights become host scalars (no sync to pay): `add_(g, alpha=w)` is about twice
    # as fast as `addcmul_` with a 0-d tensor. Weights on a GPU stay there.
    w: Sequence[float] | Tensor
    shift = 1.0
    if not isinstance(weights, Tensor):
        w, shift = _fit_weights(list(weights), acc)
    elif weights.device.type == "cpu":
        w, shift = _fit_weights(weights.to(torch.float64).tolist(), acc)
    else:
        w = weights.to(device=device, dtype=acc)
    chunk = _chunk(n, device, CPU_SUM_CHUNK)
    direct = dtype == acc  # accumulate straight into the output slice
    scratch = None if direct else torch.empty(chunk, dtype=acc, device=device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # One chunk (every GPU call, most CPU ones): the tensors themselves, no slices.
        parts = flat if stop - start == n else [f[start:stop] for f in flat]
        if direct:
            o = out if stop - start == n else out[start:stop]
            torch.mul(parts[0], w[0], out=o)
        else:  # upcast first, so the math runs in `acc`
            o = scratch[: stop - start]  # type: ignore[index]
            o.copy_(parts[0]).mul_(w[0])
        for i in range(1, len(parts)):
            if isinstance(w, Tensor):
                o.addcmul_(parts[i], w[i])
            else:
                o.add_(parts[i], alpha=w[i])
        if shift != 1.0:
            o.mul_(shift)
        if not direct:
            out[start:stop].copy_(o)
    return out.view(grads[0].shape)


#: the largest weight :func:`_fit_weights` leaves as it is, per accumulation dtype
_WEIGHT_LIMIT: dict[torch.dtype, float] = {}


def _fit_weights(weights: list[float], acc: torch.dtype) -> tuple[list[float], float]:
    """Host weights that fit the accumulation dtype, and the power of two to multiply the
    sum by afterwards (1.0 when they fit already, the common case: no extra pass).

    A finite float64 weight above the accumulation dtype's range (a norm ratio above about
    1e38 with float32 gradients) would become inf there, and 0 * inf = NaN; divided by an
    exact power of two it fits, and the products ``w_t g_t`` keep their values up to
    rounding (they are what must fit the output dtype).
    """
    top = max(map(abs, weights), default=0.0)
    limit = _WEIGHT_LIMIT.get(acc)
    if limit is None:
        limit = _WEIGHT_LIMIT[acc] = torch.finfo(acc).max / 4
    if not math.isfinite(top) or top <= limit:
        return weights, 1.0
    shift = 2.0 ** (math.frexp(top)[1] - math.frexp(limit)[1] + 1)
    return [x / shift for x in weights], shift
