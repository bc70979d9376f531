"""The fused step's two passes in plain PyTorch (the CPU path and the reference).

Both passes walk the flattened gradients in chunks small enough to stay in
cache, so each of the T gradients is read once per pass from main memory and
no ``[T, N]`` copy of the gradients is ever made:

* pass 1 copies one chunk of every gradient into a ``[T, chunk]`` scratch
  buffer (cache resident) and accumulates ``G += C @ C.T`` with BLAS;
* pass 2 writes ``out[chunk] = sum_t w_t * g_t[chunk]`` into the output slice.

Memory traffic: pass 1 reads ``T*N`` elements, pass 2 reads ``T*N`` and writes
``N``: ``(2T + 1) * N * itemsize`` bytes, the minimum for any two-pass method
(weights depend on the whole Gram matrix, so the gradients must be read twice
unless all of them fit in cache). A naive composition (``torch.stack``, norms,
weighted sum with broadcasting) moves about ``(6T + 1) * N`` elements.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# Elements per task per chunk. 2**16 float32 values * 8 tasks = 2 MiB of scratch:
# comfortably inside L2 on CPUs; on GPUs the chunk is irrelevant (one chunk).
CPU_CHUNK = 1 << 16


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Statistics are kept in float32, or float64 for float64 gradients."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunk(n: int, device: torch.device) -> int:
    return n if device.type != "cpu" else min(n, CPU_CHUNK)


def gram_torch(grads: Sequence[Tensor]) -> Tensor:
    """Gram matrix ``G_ij = <g_i, g_j>`` of equally shaped gradients, in float32 (or float64)."""
    flat = [g.reshape(-1) for g in grads]
    t, n = len(flat), flat[0].numel()
    acc = accumulation_dtype(flat[0].dtype)
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


def weighted_sum_torch(grads: Sequence[Tensor], weights: Tensor) -> Tensor:
    """``sum_t weights[t] * grads[t]`` accumulated in float32, returned in the gradients' dtype."""
    flat = [g.reshape(-1) for g in grads]
    n, dtype, device = flat[0].numel(), flat[0].dtype, flat[0].device
    acc = accumulation_dtype(dtype)
    w = weights.to(device=device, dtype=acc)
    out = torch.empty(n, dtype=dtype, device=device)
    if n == 0:
        return out.view(grads[0].shape)
    chunk = _chunk(n, device)
    direct = dtype == acc  # accumulate straight into the output slice
    scratch = None if direct else torch.empty(chunk, dtype=acc, device=device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        o = out[start:stop] if direct else scratch[: stop - start]  # type: ignore[index]
        o.copy_(flat[0][start:stop]).mul_(w[0])  # upcast first: math in `acc`
        for i in range(1, len(flat)):
            o.addcmul_(flat[i][start:stop], w[i])
        if not direct:
            out[start:stop].copy_(o)
    return out.view(grads[0].shape)
