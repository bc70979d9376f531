"""Memory traffic of one balancing step: what notebook 06 counts.

The fused two-pass op and a naive PyTorch composition differ only in how many
times the T gradients of N elements cross the memory bus; these formulas are
what the kernel's docstring (``mbkernels/ops/triton_ops.py``) derives.
"""

from __future__ import annotations

#: Bytes per element of the dtypes the course talks about.
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}

#: Full passes over the T gradients per method (each pass reads or writes T*N elements).
TASK_PASSES = {"fused": 2, "naive": 6}


def bytes_moved(num_tasks: int, numel: int, dtype: str, method: str = "fused") -> int:
    """Minimum memory traffic of one balancing step (the formula of notebook 06).

    ``fused``: pass 1 reads T*N, pass 2 reads T*N and writes N -> (2T + 1) N elements.
    ``naive``: stack (read T*N, write T*N), Gram (read T*N), ``w[:, None] * G``
    (read T*N, write T*N), ``.sum(0)`` (read T*N, write N) -> (6T + 1) N elements.
    """
    if dtype not in ITEMSIZE:
        raise ValueError(f"dtype must be one of {sorted(ITEMSIZE)}, got {dtype!r}")
    if method not in TASK_PASSES:
        raise ValueError(f"method must be one of {sorted(TASK_PASSES)}, got {method!r}")
    return (TASK_PASSES[method] * num_tasks + 1) * numel * ITEMSIZE[dtype]
