"""Where MultiBalance's backward time goes inside a training step, piece by piece.

Trains the throughput benchmark's DLRM-style model (:mod:`mbviz.dlrm`) with a
default :class:`mbkernels.MultiBalance` and times, inside every step, the pieces of
the fork's backward (:mod:`benchmarks.breakdown`): pass 1 (squared norms with
the float32 range check), the rule, pass 2 (the weighted sum), all of ``Balancer.combine``,
and the statistics (the rest of ``combine``: checks, proposed state, commit, stats).
Then it times the same pieces again on the last step's gradients, back to back
outside training ("hot": data and code in cache), so the difference shows what
reading the T gradients after all towers have run costs.

    python -m benchmarks.combine_breakdown --tasks 8
    python -m benchmarks.combine_breakdown --tasks 4 8 --steps 60 --json breakdown.json

CPU only (on a GPU the pieces run asynchronously; use the PyTorch profiler there).
Timing wraps the balancer's functions for the duration of the run
(:func:`benchmarks.breakdown.timed_pieces`); the numbers are
medians over ``--steps`` steps after ``--warmup`` steps.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any
from unittest import mock

import torch
from torch import Tensor

from mbkernels import ops
from mbkernels.numerics import range_safe_sq_norms
from mbviz.dlrm_throughput import ThroughputConfig, build_methods

from . import malloc
from .breakdown import PIECES, timed_pieces
from .throughput import throughput_config


def _median_us(samples: Sequence[float]) -> float:
    return 1e6 * statistics.median(samples)


def measure(cfg: ThroughputConfig, num_tasks: int, *, steps: int, warmup: int) -> dict[str, Any]:
    """Median microseconds per piece in the step (``in_step``) and hot, and the step time."""
    method = build_methods(cfg, num_tasks, ["multibalance"])[0]["multibalance"]
    bal = method.extra["balancer"]
    last_grads: list[Tensor] = []
    combine = bal.combine

    def keep_grads(grads: Sequence[Tensor | None]) -> Tensor | None:
        last_grads[:] = [g for g in grads if g is not None]
        return combine(grads)

    step_s: list[float] = []
    with mock.patch.object(bal, "combine", keep_grads), timed_pieces(bal) as times:
        for i in range(warmup + steps):
            if i == warmup:
                times.clear()
            start = time.perf_counter()
            method.step()
            if i >= warmup:
                step_s.append(time.perf_counter() - start)
            times.end_step()
    in_step = times.median_us()

    # The same pieces on the last gradients, repeated back to back (on a copy of the
    # balancer, so its state is not advanced further).
    hot_bal = copy.deepcopy(bal)
    gram = torch.diag(range_safe_sq_norms(last_grads))
    weights = copy.deepcopy(hot_bal).step_weights(gram)  # a step on another copy
    state = {name: getattr(hot_bal, name) for name in hot_bal.rule.init_state()}
    hot_calls: dict[str, Callable[[], Any]] = {
        "pass1": lambda: range_safe_sq_norms(last_grads),
        "rule": lambda: hot_bal.rule.weights(gram, state, hot_bal.step + 1),
        "pass2": lambda: ops.weighted_sum(last_grads, weights),
        "combine": lambda: hot_bal.combine(last_grads),
    }
    hot: dict[str, float] = {}
    for piece, call in hot_calls.items():
        call()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        hot[piece] = _median_us(times)
    hot["statistics"] = hot["combine"] - hot["pass1"] - hot["rule"] - hot["pass2"]
    return {"step_us": _median_us(step_s), "in_step_us": in_step, "hot_us": hot}


def table(results: dict[int, dict[str, Any]]) -> str:
    lines = [f"{'T':>3} {'piece':<8} {'in step µs':>11} {'% of step':>10} {'hot µs':>8}"]
    for t, r in results.items():
        for piece in (*PIECES, "statistics"):
            v = r["in_step_us"][piece]
            share = 100 * v / r["step_us"]
            lines.append(f"{t:>3} {piece:<8} {v:11.0f} {share:9.2f}% {r['hot_us'][piece]:8.0f}")
        lines.append(f"{t:>3} {'step':<8} {r['step_us']:11.0f} {100:9.2f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[int, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--batch", type=int, default=None, help="default: 2048")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test-suite size
    args = parser.parse_args(argv)
    if (
        min(args.tasks) < 1
        or (args.batch is not None and args.batch < 1)
        or args.steps < 1
        or args.warmup < 0
    ):
        parser.error("--tasks, --batch and --steps must be >= 1, --warmup >= 0")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    malloc.tune_glibc()  # as the throughput benchmark does by default
    # The throughput benchmark's model; --tiny is its test-suite size.
    sizes = argparse.Namespace(
        tiny=args.tiny, quick=False, tasks=None, batch=args.batch, rounds=None
    )
    cfg = throughput_config(sizes, "cpu")
    results = {t: measure(cfg, t, steps=args.steps, warmup=args.warmup) for t in args.tasks}
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(t): r for t, r in results.items()}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
