"""Where a balancer's backward time goes, piece by piece, inside training steps.

:func:`timed_pieces` wraps the functions the fork's backward (``Balancer.combine``)
calls for each piece and adds up, per step, the seconds spent in each:

* ``pass1``: the Gram matrix or the squared norms of the task gradients, with the
  float32 range check (both the host path and the device path);
* ``rule``: the rule's weights and new state (``Rule.weights`` or ``Rule.host_weights``);
* ``pass2``: the weighted sum ``sum_t w_t g_t``;
* ``combine``: all of ``_combine``. What it spends outside the three pieces above is
  ``statistics``: the finiteness checks, the proposed state, the commit into the
  buffers and the record behind :attr:`Balancer.stats`.

What a balanced step costs beyond the plain sum and outside ``combine`` is the
plumbing: the fork's forward, autograd holding T gradients of Z instead of adding
them up, and the Python ``autograd.Function`` around the backward. The throughput
benchmark's small-model rows (:mod:`.small`) report it as the paired overhead minus
``combine``. Wrappers add ~1 µs per wrapped call; they are removed on exit.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

from mbkernels import _host, ops
from mbkernels import balancer as balancer_module
from mbkernels.balancer import Balancer

PIECES = ("pass1", "rule", "pass2", "combine")
#: Derived from the timed pieces: the part of ``combine`` outside passes 1, 2 and the rule.
DERIVED = ("statistics",)

# (module, attribute) wrapped for each piece; attributes a module lacks are skipped.
_MODULE_HOOKS: dict[str, tuple[tuple[Any, str], ...]] = {
    "pass1": (
        (balancer_module, "range_safe_sq_norms"),
        (balancer_module, "range_safe_gram"),
        (_host, "pass1"),
        (_host, "norms_small"),
    ),
    "pass2": ((ops, "weighted_sum"), (_host, "pass2")),
}


class PieceTimes:
    """Seconds per piece, one entry per completed step (see :meth:`end_step`)."""

    def __init__(self) -> None:
        self._current = dict.fromkeys(PIECES, 0.0)
        self.steps: list[dict[str, float]] = []

    def add(self, piece: str, seconds: float) -> None:
        self._current[piece] += seconds

    def end_step(self) -> None:
        self.steps.append(self._current)
        self._current = dict.fromkeys(PIECES, 0.0)

    def clear(self) -> None:
        self._current = dict.fromkeys(PIECES, 0.0)
        self.steps.clear()

    def median_us(self) -> dict[str, float]:
        """Median µs per step of every piece, and of ``statistics`` (derived per step)."""
        out = {p: 1e6 * statistics.median(s[p] for s in self.steps) for p in PIECES}
        out["statistics"] = 1e6 * statistics.median(
            s["combine"] - s["pass1"] - s["rule"] - s["pass2"] for s in self.steps
        )
        return out


def _timed(fn: Callable[..., Any], piece: str, times: PieceTimes) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.add(piece, time.perf_counter() - start)

    return wrapper


@contextlib.contextmanager
def timed_pieces(bal: Balancer) -> Iterator[PieceTimes]:
    """Time the pieces of ``bal``'s backward while the block runs; call
    ``times.end_step()`` after each training step."""
    times = PieceTimes()
    with contextlib.ExitStack() as stack:
        for piece, hooks in _MODULE_HOOKS.items():
            for module, name in hooks:
                fn = getattr(module, name, None)
                if fn is not None:
                    stack.enter_context(mock.patch.object(module, name, _timed(fn, piece, times)))
        for name in ("weights", "weights_subset", "host_weights"):
            fn = getattr(bal.rule, name, None)
            if fn is not None:
                stack.enter_context(mock.patch.object(bal.rule, name, _timed(fn, "rule", times)))
        stack.enter_context(
            mock.patch.object(bal, "combine", _timed(bal.combine, "combine", times))
        )
        yield times
