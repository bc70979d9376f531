"""Throughput on small models, where the balancer's fixed per-step cost shows.

On the DLRM-style model of :mod:`.throughput` (|Z| = 2 MiB) a step takes tens of
milliseconds and the balancer's fixed cost (Python, tiny tensor ops, autograd
plumbing) is lost in it. On the tabular models a course or a first experiment uses
it is not. Models:

* ``tabular``: dense features 14 -> 64 -> 32 (ReLU), z = [256, 32], T towers
  32 -> 16 -> 1, binary cross-entropy per task, AdamW;
* ``movielens``: the course's MovieLens shared-bottom model (:mod:`mbviz`, 3 tasks,
  batch 512, AdamW as the course trains it, the balancer built as the course builds
  it: ``full_gram=True``). Only when ``mbviz`` and its cached dataset are there.

Methods (each on its own copy of one initial model, same batch): ``sum`` (the
baseline), ``multibalance`` (:class:`mbkernels.MultiBalance`, default settings),
``multibalance_tensor`` (the same with ``fast_paths=False``: every step through the
general tensor path), ``equal_fork``
(``Balancer(Equal)``: the fork and its statistics with fixed weights), and two bare
forks (:func:`mbkernels.fork.fork`) without a balancer: ``fork_sum`` adds the T task
gradients up (the plain sum's gradient: what the fork itself costs) and ``fork_hold``
passes on task 0's alone (what the autograd plumbing costs, no pass over the gradients).
Timed in interleaved rounds (:mod:`.timing`); reported per method: the paired
ratio of steps/s to the plain sum with its 90 % bootstrap interval, and the paired
overhead per step in µs (method minus sum, same round) with its interval. For
``multibalance`` the overhead is broken down (:mod:`.breakdown`) from a separate
run of timed steps: pass 1, rule, pass 2, statistics, and the plumbing (the rest).
"""

from __future__ import annotations

import copy
import importlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mbkernels.balancer import Balancer
from mbkernels.fork import fork
from mbkernels.multibalance import MultiBalance
from mbkernels.rules import Equal
from mbviz.timing import (
    format_interval,
    interleaved,
    paired_difference,
    paired_difference_interval,
    paired_ratio,
    paired_ratio_interval,
)

from .breakdown import DERIVED, PIECES, timed_pieces

SMALL_MODELS = ("tabular", "movielens")
SMALL_METHODS = (
    "sum",
    "multibalance",
    "multibalance_tensor",
    "equal_fork",
    "fork_sum",
    "fork_hold",
)
LR = 1e-3


class Tabular(nn.Module):
    """Dense features -> shared MLP -> z -> one MLP tower per task."""

    def __init__(
        self,
        num_tasks: int,
        in_dim: int = 14,
        bottom: Sequence[int] = (64, 32),
        tower: int = 16,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        sizes = [in_dim, *bottom]
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.bottom = nn.Sequential(*layers)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(sizes[-1], tower), nn.ReLU(), nn.Linear(tower, 1))
            for _ in range(num_tasks)
        )


@dataclass
class SmallMethod:
    """One training step of one method on its own model copy (``step()``)."""

    name: str
    step: Callable[[], None]
    balancer: Balancer | None


class _BareFork:
    """The fork alone: ``fork_sum`` returns the plain sum of the task gradients,
    ``fork_hold`` task 0's gradient (not the sum's: a timing control only)."""

    def __init__(self, num_tasks: int, hold: bool) -> None:
        self.num_tasks, self.hold = num_tasks, hold

    def __call__(self, z: Tensor) -> tuple[Tensor, ...]:
        return fork(z, self.num_tasks, self._combine)

    def _combine(self, grads: Sequence[Tensor | None]) -> Tensor | None:
        gs = [g for g in grads if g is not None]
        if self.hold or not gs:
            return gs[0] if gs else None
        out = gs[0]
        for g in gs[1:]:
            out = out + g
        return out


Split = Callable[[Tensor], Sequence[Tensor]]


def _split(name: str, num_tasks: int, **kwargs: Any) -> Split | None:
    """What the method puts between z and the towers (``None``: z itself, the plain sum)."""
    if name in ("fork_sum", "fork_hold"):
        return _BareFork(num_tasks, hold=name == "fork_hold")
    return _balancer(name, num_tasks, **kwargs)


def _tabular_methods(num_tasks: int, batch: int, names: Sequence[str]) -> list[SmallMethod]:
    torch.manual_seed(0)
    base = Tabular(num_tasks)
    x = torch.randn(batch, 14)
    y = (torch.rand(batch, num_tasks) > 0.5).float()
    bce = nn.functional.binary_cross_entropy_with_logits

    def make(name: str) -> SmallMethod:
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        split = _split(name, num_tasks)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            z = model.bottom(x)
            zs = split(z) if split is not None else (z,) * num_tasks
            losses = [
                bce(tower(z_t).squeeze(-1), y[:, t])
                for t, (tower, z_t) in enumerate(zip(model.towers, zs))
            ]
            sum(losses).backward()  # type: ignore[union-attr]
            opt.step()

        return SmallMethod(name, step, split if isinstance(split, Balancer) else None)

    return [make(n) for n in names]


def _balancer(name: str, num_tasks: int, **kwargs: Any) -> Balancer | None:
    if name == "sum":
        return None
    if name == "multibalance":
        return MultiBalance(num_tasks, **kwargs)
    if name == "multibalance_tensor":
        bal = MultiBalance(num_tasks, **kwargs)
        bal.fast_paths = False  # the general tensor path (the fallback of both fast paths)
        return bal
    return Balancer(Equal(num_tasks), **kwargs)


def _movielens_methods(batch: int, names: Sequence[str]) -> list[SmallMethod]:
    """The course's MovieLens model (needs mbviz and its cached dataset)."""
    try:  # by name: mbviz.problems needs the [viz] extra, and mypy checks benchmarks without it
        problems = importlib.import_module("mbviz.problems")
    except ImportError as exc:  # pragma: no cover - mbviz is part of this project
        raise RuntimeError("the movielens rows need mbviz (pip install the [viz] extra)") from exc
    problem = problems.MovieLensProblem()
    torch.manual_seed(0)
    base = problem.make_model("shared_bottom")
    gen = torch.Generator().manual_seed(0)
    b = problem.sample_batch(batch, gen)

    def make(name: str) -> SmallMethod:
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        split = _split(name, problem.num_tasks, full_gram=True)  # as the course attaches it
        model.balancer = split  # the model calls it on z (None: z itself)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            losses = problem.task_losses(model(*b.inputs), b)
            sum(losses).backward()
            opt.step()

        return SmallMethod(name, step, split if isinstance(split, Balancer) else None)

    return [make(n) for n in names]


@dataclass
class SmallConfig:
    models: Sequence[str] = ("tabular",)
    tasks: Sequence[int] = (4,)  # tabular only; movielens has its 3 tasks
    batch: int = 256  # tabular; movielens uses 512 (the course's batch)
    rounds: int = 41
    min_sample_s: float = 0.2
    breakdown_steps: int = 400
    methods: Sequence[str] = SMALL_METHODS
    extra: dict[str, Any] = field(default_factory=dict)


def _breakdown(method: SmallMethod, steps: int) -> dict[str, float]:
    assert method.balancer is not None
    with timed_pieces(method.balancer) as times:
        for i in range(steps + 20):
            if i == 20:
                times.clear()
            method.step()
            times.end_step()
    return times.median_us()


def run_small(cfg: SmallConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every method on every small model; return a JSON-ready dict."""
    rows: list[dict[str, Any]] = []
    cases: list[tuple[str, int, int]] = []
    for model in cfg.models:
        if model == "tabular":
            cases += [("tabular", t, cfg.batch) for t in cfg.tasks]
        else:
            cases.append(("movielens", 3, 512))
    for model, t, batch in cases:
        if model == "tabular":
            methods = _tabular_methods(t, batch, cfg.methods)
            z_shape = [batch, 32]
        else:
            methods = _movielens_methods(batch, cfg.methods)
            z_shape = [batch, 32]
        timings = interleaved(
            {m.name: m.step for m in methods},
            rounds=cfg.rounds,
            warmup=20,
            min_sample_s=cfg.min_sample_s,
        )
        base = timings["sum"]
        for m in methods:
            tm = timings[m.name]
            row: dict[str, Any] = {
                "model": model,
                "num_tasks": t,
                "method": m.name,
                "z_shape": z_shape,
                **tm.as_dict(),
                "steps_per_s": 1.0 / tm.median,
                "ratio_vs_sum_paired": paired_ratio(base, tm),
                "ratio_vs_sum_paired_90": list(paired_ratio_interval(base, tm)),
                "overhead_us": 1e6 * paired_difference(base, tm),
                "overhead_us_90": [1e6 * v for v in paired_difference_interval(base, tm)],
            }
            if m.name == "multibalance" and cfg.breakdown_steps:
                pieces = _breakdown(m, cfg.breakdown_steps)
                pieces["plumbing"] = row["overhead_us"] - pieces["combine"]
                row["breakdown_us"] = pieces
            rows.append(row)
        if progress is not None:
            progress(
                f"{model} T={t}: "
                + ", ".join(
                    f"{r['method']} {r['ratio_vs_sum_paired']:.3f}x"
                    for r in rows
                    if r["model"] == model and r["num_tasks"] == t
                )
            )
    return {
        "benchmark": "throughput_small",
        "config": {
            "models": list(cfg.models),
            "tasks": list(cfg.tasks),
            "batch": cfg.batch,
            "rounds": cfg.rounds,
            "min_sample_s": cfg.min_sample_s,
            "breakdown_steps": cfg.breakdown_steps,
            "threads": torch.get_num_threads(),
        },
        "rows": rows,
    }


def format_small(result: dict[str, Any]) -> str:
    """Plain-text table: ratio to the plain sum with its interval, overhead in µs, and
    the breakdown of MultiBalance's overhead."""
    lines = [
        "small models on cpu, "
        f"{result['config']['threads']} thread(s); ratio = steps/s ÷ plain sum's (paired, "
        "interleaved rounds); overhead = µs per step beyond the plain sum (paired)",
        f"{'model':>9} {'T':>2} {'method':>12} {'steps/s':>8} {'paired':>7} {'90% interval':>13} "
        f"{'overhead µs':>11} {'90% interval':>13}",
    ]
    for r in result["rows"]:
        lo, hi = r["overhead_us_90"]
        lines.append(
            f"{r['model']:>9} {r['num_tasks']:>2} {r['method']:>12} {r['steps_per_s']:>8.1f} "
            f"{r['ratio_vs_sum_paired']:>6.3f}x "
            f"{format_interval(r['ratio_vs_sum_paired_90']):>13} "
            f"{r['overhead_us']:>11.0f} {f'{lo:.0f}-{hi:.0f}':>13}"
        )
    pieces = [*PIECES[:-1], *DERIVED, "plumbing"]
    lines.append("")
    lines.append(
        "multibalance overhead, µs per step (median of timed steps; plumbing = overhead "
        "minus combine): " + ", ".join(pieces)
    )
    for r in result["rows"]:
        b = r.get("breakdown_us")
        if b:
            lines.append(
                f"{r['model']:>9} T={r['num_tasks']}: "
                + ", ".join(f"{p} {b[p]:.0f}" for p in pieces)
                + f" (combine {b['combine']:.0f})"
            )
    return "\n".join(lines)


def small_config(args: Any) -> SmallConfig:
    """From command-line arguments (``--model small|tabular|movielens``, ``--tiny``)."""
    which = args.model
    models: tuple[str, ...] = ("tabular", "movielens") if which == "small" else (which,)
    cfg = SmallConfig(models=models)
    if getattr(args, "tiny", False):
        cfg.rounds, cfg.min_sample_s, cfg.breakdown_steps = 3, 0.0, 5
    elif getattr(args, "quick", False):
        cfg.rounds, cfg.min_sample_s, cfg.breakdown_steps = 15, 0.1, 200
    if args.tasks:
        cfg.tasks = tuple(args.tasks)
    if args.batch:
        cfg.batch = args.batch
    if args.rounds:
        cfg.rounds = args.rounds
    return cfg
