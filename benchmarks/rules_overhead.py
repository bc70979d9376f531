"""What each balancing rule adds to a training step: the tiny T x T solve between the
kernel's two passes.

For T = 2..8 it times, interleaved in one run (so machine noise hits all alike),
``Balancer.step_weights`` of every rule on a random Gram matrix (the rule plus the
balancer's state handling, exactly what the fork's backward runs between the passes),
next to the two passes themselves (Gram + weighted sum) over ``N`` elements per task.
The loss-aware weightings (``mbk.WEIGHTINGS``) are timed the same way with what they add
per step: ``observe(losses)`` before ``step_weights`` (and FAMO's ``update`` after it).
Prints milliseconds per step and writes JSON with ``--json``.

    python -m benchmarks.rules_overhead                   # CPU, N = 2^20
    python -m benchmarks.rules_overhead --device cuda --json rules.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

import mbkernels as mbk
from mbkernels import ops
from mbviz.timing import interleaved

#: Hyperparameters used for the rules that need some (defaults otherwise).
RULE_KWARGS = {"multibalance": {"reference": "mean"}}


def measure(
    tasks: list[int], *, n: int, rounds: int, device: str, min_sample_s: float
) -> dict[str, dict[int, float]]:
    """``{candidate: {T: median seconds per step}}``."""
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    out: dict[str, dict[int, float]] = {}
    for t in tasks:
        gen = torch.Generator().manual_seed(t)
        m = torch.randn(t, 64, generator=gen) * torch.logspace(-1, 1, t)[:, None]
        gram = (m @ m.T).to(dev)
        candidates = {}
        for name in mbk.RULES:
            bal = mbk.Balancer(mbk.make_rule(name, t, **RULE_KWARGS.get(name, {}))).to(dev)
            candidates[name] = lambda bal=bal, gram=gram: bal.step_weights(gram)
        losses = (torch.rand(t, generator=gen, dtype=torch.float64) + 0.5).to(dev)
        for name in mbk.WEIGHTINGS:
            bal = mbk.Balancer(mbk.make_rule(name, t)).to(dev)
            candidates[name] = lambda bal=bal, gram=gram, losses=losses: weighting_step(
                bal, gram, losses
            )
        grads = [torch.randn(n, generator=gen).to(dev) for _ in range(t)]
        weights = torch.ones(t, device=dev)

        def two_passes(grads=grads, weights=weights):
            ops.gram(grads)
            return ops.weighted_sum(grads, weights)

        candidates[f"two passes, N={n}"] = two_passes
        timings = interleaved(candidates, rounds=rounds, sync=sync, min_sample_s=min_sample_s)
        for name, timing in timings.items():
            out.setdefault(name, {})[t] = timing.median
    return out


def weighting_step(bal: mbk.Balancer, gram: torch.Tensor, losses: torch.Tensor) -> None:
    """What a loss-aware weighting runs per training step besides the two passes."""
    bal.observe(losses)
    bal.step_weights(gram)
    if bal.rule.name == "famo":
        bal.update(0.9 * losses)


def table(results: dict[str, dict[int, float]], tasks: list[int]) -> str:
    width = max(len(k) for k in results) + 2
    lines = [f"{'ms per step':<{width}}" + "".join(f"{'T=' + str(t):>9}" for t in tasks)]
    for name, row in results.items():
        lines.append(f"{name:<{width}}" + "".join(f"{row[t] * 1e3:9.3f}" for t in tasks))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=list(range(2, 9)))
    parser.add_argument("--n", type=int, default=2**20, help="elements per task gradient")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-sample-s", type=float, default=0.02)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.tasks) or args.n < 1 or args.rounds < 1:
        parser.error("--tasks, --n and --rounds must be >= 1")
    results = measure(
        args.tasks,
        n=args.n,
        rounds=args.rounds,
        device=args.device,
        min_sample_s=args.min_sample_s,
    )
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(table(results, args.tasks))
    report = {
        "device": args.device,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "n": args.n,
        "median_s": {k: {str(t): v for t, v in row.items()} for k, row in results.items()},
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
