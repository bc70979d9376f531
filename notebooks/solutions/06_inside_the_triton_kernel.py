"""Solution of the exercise in 06_inside_the_triton_kernel.ipynb: pass 2 as a Triton kernel.

Run it from the repository root: ``python notebooks/solutions/06_inside_the_triton_kernel.py``.
Without a GPU it runs through Triton's interpreter (switched on below, before the import).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first `import triton`

import triton
import triton.language as tl

from mbviz.course import check_weighted_sum_kernel


@triton.jit
def my_weighted_sum_kernel(g_ptr, w_ptr, out_ptr, T, N, BLOCK: tl.constexpr):
    """out[i] = sum_t w[t] * g[t, i] for gradients stacked row-major as g [T, N]."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)  # this program's block of the output
    mask = offs < N  # the last block runs past N
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    # --- the answer -----------------------------------------------------------
    for t in range(T):
        w_t = tl.load(w_ptr + t)  # one float32 weight
        g = tl.load(g_ptr + t * N + offs, mask=mask, other=0.0)  # this block of row t
        acc += w_t * g.to(tl.float32)  # accumulate in float32 whatever the input dtype
    # ---------------------------------------------------------------------------
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)  # one write


def my_weighted_sum(g, w, BLOCK=128):
    out = torch.empty(g.shape[1], dtype=g.dtype, device=g.device)
    grid = (triton.cdiv(g.shape[1], BLOCK),)  # one program per block of the output
    my_weighted_sum_kernel[grid](g.contiguous(), w, out, g.shape[0], g.shape[1], BLOCK=BLOCK)
    return out


assert check_weighted_sum_kernel(my_weighted_sum)
