"""Which implementation of the fused step runs for a given tensor.

``"auto"`` picks Triton for CUDA tensors of a supported dtype when Triton is
installed, and the PyTorch path otherwise. ``"triton"`` and ``"torch"`` force
a choice; forcing Triton where it cannot run is an error, never a silent
fallback.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Literal

import torch

from ..validation import check_choice

Backend = Literal["auto", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.cache
def triton_available() -> bool:
    """True if the ``triton`` package can be imported (it may still lack a GPU)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """True if Triton kernels run through the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """Return ``"torch"`` or ``"triton"`` for tensors on ``device`` of ``dtype``."""
    check_choice("backend", backend, BACKENDS)
    if backend == "torch":
        return "torch"
    if backend == "auto":  # called on every backward: no environment lookup on this path
        ok = device.type == "cuda" and dtype in TRITON_DTYPES and triton_available()
        return "triton" if ok else "torch"
    can_run_here = device.type == "cuda" or (device.type == "cpu" and triton_interpreting())
    # backend == "triton": explain exactly what is missing.
    if not triton_available():
        raise RuntimeError(
            "backend='triton' was requested but the 'triton' package is not installed; "
            "install it (pip install triton) or use backend='torch' or 'auto'"
        )
    if not can_run_here:
        raise RuntimeError(
            f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), "
            f"got tensors on {device}; use backend='torch' or 'auto'"
        )
    if dtype not in TRITON_DTYPES:
        raise RuntimeError(
            f"backend='triton' supports float16, bfloat16 and float32 gradients, got {dtype}; "
            "use backend='torch' or 'auto'"
        )
    return "triton"
