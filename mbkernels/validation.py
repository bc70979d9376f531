"""Argument checks that raise one kind of error with one kind of message.

Every public constructor in :mod:`mbkernels` (and in :mod:`mbviz`) validates through
these helpers, so a bad value always produces ``ValueError: <name> must be in <range>,
got <value>`` and is rejected *before* any state is created or changed. They are public
for code built on :mod:`mbkernels` that wants the same errors:

>>> from mbkernels.validation import check_float
>>> check_float("beta", 0.9, low=0.0, high=1.0, high_open=True)
0.9
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

__all__ = ["check_choice", "check_float", "check_int"]


def check_int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    """Return ``int(value)`` if it is an integer in ``[low, high]`` (``high=None``:
    unbounded). Any :class:`numbers.Integral` counts (``np.int64(3)`` too), booleans do not;
    the result is a plain ``int``, so configs saved in checkpoints stay plain Python."""
    if not _is_number(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer in {_int_range(low, high)}, got {value!r}")
    v = int(value)  # type: ignore[call-overload]
    if v < low or (high is not None and v > high):
        raise ValueError(f"{name} must be an integer in {_int_range(low, high)}, got {value}")
    return v


def check_float(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``float(value)`` if it is a finite real number in the given interval (any
    :class:`numbers.Real` but a boolean: ``np.float32(0.9)`` too)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if not _is_number(value, numbers.Real):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    v = float(value)  # type: ignore[arg-type]
    ok = (
        (math.isfinite(v) or (math.isinf(v) and v == high and not high_open))
        and (v > low if low_open else v >= low)
        and (v < high if high_open else v <= high)
    )
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``str(value)`` if it is one of ``choices``."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return str(value)


def _is_number(value: object, kind: type) -> bool:
    """``value`` is an instance of the ``numbers`` ABC ``kind`` and not a boolean (Python's
    ``bool`` is an ``Integral``; NumPy's ``bool_`` is not registered as a number)."""
    return isinstance(value, kind) and not isinstance(value, bool)


def _int_range(low: int, high: int | None) -> str:
    return f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
