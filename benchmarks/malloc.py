"""Which C allocator the CPU numbers were measured with, and a way to tune glibc's.

PyTorch's CPU tensors come straight from ``malloc``. With glibc's defaults a
large freed block is often handed back to the kernel (``munmap``, or trimming
the top of the heap), so the next step's tensors of the same size fault their
pages in again. A method that holds more large tensors at once (the fork holds
all T task gradients of Z) pays that more often. On the development VM one
page fault cost ~1.6 µs (16 MiB of fresh pages: ~6.5 ms), which at T = 8 was
1–2 ms of a 72 ms step (~1,250 faults per step for MultiBalance, ~0–25 for the
plain sum).

PyTorch's CPU performance guide recommends jemalloc or tcmalloc for training,
which keep freed memory for reuse. :func:`tune_glibc` gets the same effect
inside one process with glibc's own ``mallopt``: blocks up to ``threshold``
bytes are served from the heap and the heap is not trimmed below it. The
benchmark prints which allocator ran (:func:`describe`); ``--malloc default``
keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Large enough for every tensor of the benchmark model; glibc caps the mmap threshold
#: at 32 MiB on 64-bit systems (HEAP_MAX / 2), so larger values are refused.
DEFAULT_THRESHOLD = 32 << 20

_tuned: dict[str, int] = {}


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def preloaded() -> str | None:
    """``"jemalloc"`` or ``"tcmalloc"`` if one is preloaded (``LD_PRELOAD``), else ``None``."""
    pre = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc"):
        if name in pre:
            return name
    return None


def tune_glibc(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Keep freed blocks up to ``threshold`` bytes in the process (glibc only).

    Returns ``True`` if glibc accepted both settings, ``False`` where there is no
    glibc or another allocator is preloaded (nothing is changed then).
    """
    if not isinstance(threshold, int) or not (1 << 16) <= threshold <= DEFAULT_THRESHOLD:
        raise ValueError(
            f"threshold must be an integer in [65536, {DEFAULT_THRESHOLD}] bytes, got {threshold!r}"
        )
    libc = _libc()
    if libc is None or preloaded():
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    ok = ok and bool(libc.mallopt(M_TRIM_THRESHOLD, threshold))
    if ok:
        _tuned.update(mmap_threshold=threshold, trim_threshold=threshold)
    return ok


def describe() -> dict[str, object]:
    """The allocator of this process, for the benchmark's environment record."""
    other = preloaded()
    if other:
        return {"allocator": other}
    libc = _libc()
    if libc is None:
        return {"allocator": "unknown (not glibc)"}
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    version = libc.gnu_get_libc_version().decode()
    env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") and k.endswith("_")}
    if _tuned:
        return {"allocator": f"glibc {version}, mallopt", **_tuned}
    if env:
        return {"allocator": f"glibc {version}, environment", **env}
    return {"allocator": f"glibc {version}, defaults"}
