"""Where MultiBalance's backward time goes inside a training step, piece by piece.

Trains the throughput benchmark's DLRM-style model (``mbkernels.bench``) with a
default :class:`mbkernels.MultiBalance` and times, inside every step, the pieces of
the fork's backward: pass 1 (squared norms with the float32 range check), the rule
with the proposed state and stats (``_propose``), pass 2 (the weighted sum) and the
rest of ``_combine`` (the state commit's copies included). Then it times the same
pieces again on the last step's gradients, back to back outside training ("hot": data
and code in cache), so the difference shows what reading the T gradients after all
towers have run costs.

    python benchmarks/combine_breakdown.py --tasks 8
    python benchmarks/combine_breakdown.py --tasks 4 8 --steps 60 --json breakdown.json

CPU only (on a GPU the pieces run asynchronously; use the PyTorch profiler there).
Timing wraps the balancer's functions for the duration of the run; the numbers are
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

from mbkernels import balancer as balancer_module
from mbkernels import ops
from mbkernels.bench import malloc
from mbkernels.bench.throughput import ThroughputConfig, build_methods, throughput_config

PIECES = ("norms", "rule", "pass2", "combine")


def _timed(fn: Callable[..., Any], samples: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        samples.append(time.perf_counter() - start)
        return out

    return wrapper


def _median_us(samples: Sequence[float]) -> float:
    return 1e6 * statistics.median(samples)


def measure(cfg: ThroughputConfig, num_tasks: int, *, steps: int, warmup: int) -> dict[str, Any]:
    """Median microseconds per piece in the step (``in_step``) and hot, and the step time."""
    method = build_methods(cfg, num_tasks, ["multibalance"])[0]["multibalance"]
    bal = method.extra["balancer"]
    samples: dict[str, list[float]] = {p: [] for p in PIECES}
    last_grads: list[Tensor] = []
    combine = bal._combine

    def keep_grads(grads: Sequence[Tensor | None]) -> Tensor | None:
        last_grads[:] = [g for g in grads if g is not None]
        return combine(grads)

    step_s: list[float] = []
    with (
        mock.patch.object(
            balancer_module,
            "range_safe_sq_norms",
            _timed(balancer_module.range_safe_sq_norms, samples["norms"]),
        ),
        mock.patch.object(ops, "weighted_sum", _timed(ops.weighted_sum, samples["pass2"])),
        mock.patch.object(bal, "_propose", _timed(bal._propose, samples["rule"])),
        mock.patch.object(bal, "_combine", _timed(keep_grads, samples["combine"])),
    ):
        for i in range(warmup + steps):
            if i == warmup:
                for s in samples.values():
                    s.clear()
            start = time.perf_counter()
            method.step()
            if i >= warmup:
                step_s.append(time.perf_counter() - start)
    in_step = {p: _median_us(s) for p, s in samples.items()}

    # The same pieces on the last gradients, repeated back to back (on a copy of the
    # balancer, so its state is not advanced further).
    hot_bal = copy.deepcopy(bal)
    gram = torch.diag(balancer_module.range_safe_sq_norms(last_grads))
    policy = hot_bal.nonfinite
    weights = hot_bal._propose(gram, off_diagonal_known=False, policy=policy).applied
    hot_calls: dict[str, Callable[[], Any]] = {
        "norms": lambda: balancer_module.range_safe_sq_norms(last_grads),
        "rule": lambda: hot_bal._propose(gram, off_diagonal_known=False, policy=policy),
        "pass2": lambda: ops.weighted_sum(last_grads, weights),
        "combine": lambda: hot_bal._combine(last_grads),
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
    return {"step_us": _median_us(step_s), "in_step_us": in_step, "hot_us": hot}


def table(results: dict[int, dict[str, Any]]) -> str:
    lines = [f"{'T':>3} {'piece':<8} {'in step µs':>11} {'% of step':>10} {'hot µs':>8}"]
    for t, r in results.items():
        for piece in PIECES:
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
