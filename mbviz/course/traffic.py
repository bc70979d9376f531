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


#: Nominal peak memory bandwidths (bytes/s) for turning bytes into time in notebook 06.
#: Vendor figures, not measurements: a real kernel reaches a fraction of them.
BANDWIDTHS = {
    "laptop, dual-channel DDR5 (~60 GB/s)": 60e9,
    "A100 80GB, HBM2e (2.0 TB/s)": 2.0e12,
    "H200, HBM3e (4.8 TB/s)": 4.8e12,
}


def transfer_time_us(
    num_tasks: int, numel: int, dtype: str, method: str, bandwidth: float
) -> float:
    """Microseconds that :func:`bytes_moved` takes at ``bandwidth`` bytes/s: the time of one
    balancing step if memory traffic were all that counted (a lower bound)."""
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0 bytes/s, got {bandwidth!r}")
    return bytes_moved(num_tasks, numel, dtype, method) / bandwidth * 1e6
