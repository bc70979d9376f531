"""Reproducible method comparisons: rules x seeds, single-task baselines, Δm%.

    python -m mbviz compare                      # MovieLens, equal vs MultiBalance vs MGDA-UB
    python -m mbviz compare --rules equal multibalance pcgrad --seeds 0 1 2 3 --steps 600

or on your own table (tasks as ``column:kind``, kind ``binary``, ``regression`` or ``count``)::

    python -m mbviz compare --csv wage.csv --tasks wage:regression insured:binary \
        --features age education --epochs 5 --monitor mean --patience 2 -o runs.csv

or from Python::

    from mbviz.experiments import compare
    cmp = compare()                 # MovieLens, 3 rules x 3 seeds, 300 steps x 512
    cmp.summary()                   # mean ± std of every task's test metrics and Δm%

Every run (rules and single-task baselines) uses the same seeds, so seed ``s`` of every
method sees the same initialisation and the same mini-batches; Δm% of a run is measured
against the single-task baselines of its own seed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import metrics as M
from ._deps import require
from .problems.base import MultiTaskProblem
from .runner import (
    PARAM_METHODS,
    RunConfig,
    RunResult,
    baseline_metrics,
    single_task_baselines,
    train,
)

DEFAULT_RULES = ("equal", "multibalance", "mgda_ub")


@dataclass
class Comparison:
    """The runs of :func:`compare`: ``results`` (rule x seed) and ``baselines`` (seed ->
    task -> single-task primary test metric)."""

    results: list[RunResult]
    baselines: dict[int, dict[str, float]]
    baseline_runs: list[RunResult]

    def table(self):  # -> pandas.DataFrame
        """One row per run: ``rule`` (display label), ``method`` (rule name), ``level``,
        ``seed``, every task's test metrics, ``delta_m``."""
        pd = require("pandas")
        rows = []
        for r in self.results:
            row: dict[str, Any] = {
                "rule": r.label,
                "method": r.config.rule,
                "level": r.config.level,
                "seed": r.config.seed,
            }
            for task, ms in r.test.items():
                for metric, value in ms.items():
                    row[f"{task} {metric}"] = value
            higher = {
                t: M.HIGHER_IS_BETTER[M.PRIMARY_METRIC[k]]
                for t, k in zip(r.task_names, r.task_kinds)
            }
            row["delta_m"] = M.delta_m(r.primary("test"), self.baselines[r.config.seed], higher)
            rows.append(row)
        for seed in self.baselines:
            row = {"rule": "single-task", "method": "single-task", "level": "-", "seed": seed}
            for r in self.baseline_runs:
                if r.config.seed != seed:
                    continue
                task = r.task_names[int(np.argmax(r.config.preference))]
                for metric, value in r.test[task].items():
                    row[f"{task} {metric}"] = value
            row["delta_m"] = 0.0
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self, *, digits: int = 4):  # -> pandas.DataFrame
        """Mean ± std over seeds per method (strings), methods as rows; with one seed,
        the values alone."""
        t = self.table()
        cols = [c for c in t.columns if c not in ("rule", "method", "level", "seed")]
        out = {}
        for rule, g in t.groupby("rule", sort=False):
            if len(g) == 1:
                out[rule] = {
                    c: f"{g[c].iloc[0]:+.{digits}f}"
                    if c == "delta_m"
                    else f"{g[c].iloc[0]:.{digits}f}"
                    for c in cols
                }
                continue
            out[rule] = {
                c: f"{g[c].mean():+.{digits}f} ± {g[c].std(ddof=1):.{digits}f}"
                if c == "delta_m"
                else f"{g[c].mean():.{digits}f} ± {g[c].std(ddof=1):.{digits}f}"
                for c in cols
            }
        pd = require("pandas")
        return pd.DataFrame(out).T.rename(columns={"delta_m": "Δm%"})


def compare(
    problem: MultiTaskProblem | None = None,
    *,
    rules: Sequence[str] = DEFAULT_RULES,
    seeds: Sequence[int] = (0, 1, 2),
    config: RunConfig | None = None,
    rule_kwargs: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    baseline_runs: Sequence[RunResult] | None = None,
    **overrides: Any,
) -> Comparison:
    """Train every rule with every seed, plus single-task baselines per seed.

    Args:
        problem: default :class:`mbviz.problems.MovieLensProblem` (all users).
        rules: rule names (:func:`mbviz.rules.rule_names`), or the parameter-level methods
            of :data:`mbviz.runner.PARAM_METHODS` (these run at ``level="parameter"``
            whatever the config's level).
        seeds: one run per rule per seed.
        config: the shared :class:`~mbviz.runner.RunConfig` (default: 300 steps x 512,
            Adam lr 1e-2); ``overrides`` change its fields.
        rule_kwargs: per-rule hyperparameters.
        progress: one progress bar over all runs (``False``: none); the runs' own bars
            are off either way.
        baseline_runs: single-task runs to measure Δm% against instead of training them
            (for example those of an earlier comparison on the same data); they must cover
            every task at every seed of ``seeds``.
    """
    if problem is None:
        from .problems import MovieLensProblem

        problem = MovieLensProblem()
    base = replace(config or RunConfig(steps=300, batch_size=512), **overrides, progress=False)
    kw = rule_kwargs or {}
    given = list(baseline_runs) if baseline_runs is not None else None
    baseline_list: list[RunResult] = []
    baselines: dict[int, dict[str, float]] = {}
    results: list[RunResult] = []
    tqdm = require("tqdm.auto").tqdm
    per_seed = len(rules) + (problem.num_tasks if given is None else 0)
    bar = tqdm(total=len(seeds) * per_seed, desc="compare", disable=not progress)
    for seed in seeds:
        if given is None:
            bar.set_postfix(seed=seed, run="single-task")
            runs = single_task_baselines(problem, replace(base, seed=seed))
            bar.update(len(runs))
        else:
            runs = [r for r in given if r.config.seed == seed]
        baselines[seed] = baseline_metrics(runs)
        if set(baselines[seed]) != set(problem.task_names):
            raise ValueError(
                f"baseline_runs must hold a single-task run of every task "
                f"{list(problem.task_names)} at seed {seed}, got {sorted(baselines[seed])}"
            )
        baseline_list += runs
        for rule in rules:
            bar.set_postfix(seed=seed, run=rule)
            level = "parameter" if rule in PARAM_METHODS else base.level
            cfg = replace(base, seed=seed, rule=rule, level=level, rule_kwargs=kw.get(rule, {}))
            results.append(train(problem, cfg))
            bar.update(1)
    bar.close()
    return Comparison(results, baselines, baseline_list)


# ---------------------------------------------------------------------- command line
def add_parser(sub: Any) -> None:
    """Register ``compare`` on the ``python -m mbviz`` subparsers."""
    p = sub.add_parser(
        "compare",
        help="compare rules over seeds on MovieLens or your own table (test metrics, Δm%%)",
    )
    p.add_argument("--rules", nargs="+", default=list(DEFAULT_RULES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--arch", default="shared_bottom", help="shared_bottom, mmoe, mmoe_experts")
    p.add_argument("--level", default="representation", help="representation or parameter")
    p.add_argument("--max-users", type=int, default=None, help="a quick subset of MovieLens")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("-o", "--output", default=None, help="write the per-run table as CSV")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    own = p.add_argument_group("your own table (instead of MovieLens)")
    src = own.add_mutually_exclusive_group()
    src.add_argument("--csv", metavar="FILE", help="read the table with pandas.read_csv")
    src.add_argument("--parquet", metavar="FILE", help="read it with pandas.read_parquet")
    own.add_argument(
        "--tasks",
        nargs="+",
        metavar="COL:KIND",
        help="task columns, KIND binary, regression or count",
    )
    own.add_argument("--features", nargs="+", metavar="COL", help="default: every other column")
    own.add_argument(
        "--categorical", nargs="+", default=[], metavar="COL", help="force categorical"
    )
    own.add_argument("--onehot", action="store_true", help="one-hot categoricals (default: embed)")
    own.add_argument("--time-col", default=None, help="split by this column (else random)")
    own.add_argument("--val-frac", type=float, default=0.15)
    own.add_argument("--test-frac", type=float, default=0.15)
    own.add_argument("--split-seed", type=int, default=0, help="seed of the random split")
    own.add_argument("--epochs", type=int, default=None, help="train by epochs instead of steps")
    own.add_argument("--eval-every", type=int, default=0, help="steps between evaluations")
    own.add_argument("--monitor", default=None, help="early stopping: mean, TASK or TASK:METRIC")
    own.add_argument("--patience", type=int, default=0, help="evaluations without improvement")
    own.add_argument(
        "--reference", default=None, metavar="TASK", help="MultiBalance's reference task"
    )
    own.add_argument("--relax", type=float, default=None, help="MultiBalance's relax factor")
    p.set_defaults(func=_run_cli)


def parse_tasks(specs: Sequence[str]) -> dict[str, str]:
    """``["price:regression", "sold:binary"]`` -> ``{"price": "regression", ...}``."""
    from .problems.base import TASK_KINDS

    tasks: dict[str, str] = {}
    for spec in specs:
        col, sep, kind = spec.rpartition(":")
        if not sep or not col:
            raise ValueError(
                f"--tasks entry {spec!r} must be COLUMN:KIND, KIND one of {TASK_KINDS}"
            )
        if kind not in TASK_KINDS:
            raise ValueError(
                f"--tasks entry {spec!r}: kind of column {col!r} must be one of {TASK_KINDS}, "
                f"got {kind!r}"
            )
        if col in tasks:
            raise ValueError(f"--tasks names column {col!r} twice")
        tasks[col] = kind
    return tasks


def _table_problem(args: argparse.Namespace) -> MultiTaskProblem:
    from .problems import TabularProblem

    if not args.tasks:
        raise ValueError(
            "--csv/--parquet needs --tasks COL:KIND ... (KIND binary, regression or count)"
        )
    kwargs: dict[str, Any] = {
        "features": args.features,
        "categorical": args.categorical,
        "categorical_encoding": "onehot" if args.onehot else "embedding",
        "time_col": args.time_col,
        "val_frac": args.val_frac,
        "test_frac": args.test_frac,
        "seed": args.split_seed,
    }
    tasks = parse_tasks(args.tasks)
    if args.csv:
        return TabularProblem.from_csv(args.csv, tasks, **kwargs)
    return TabularProblem.from_parquet(args.parquet, tasks, **kwargs)


def _multibalance_kwargs(args: argparse.Namespace, problem: MultiTaskProblem) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.reference is not None:
        if args.reference not in problem.task_names:
            raise ValueError(
                f"--reference must be one of the tasks {list(problem.task_names)}, "
                f"got {args.reference!r}"
            )
        kw.update(reference="target", target=problem.task_names.index(args.reference))
    if args.relax is not None:
        kw["relax"] = args.relax
    return kw


def _run_cli(args: argparse.Namespace) -> int:
    import torch

    from .problems import MovieLensProblem

    torch.set_num_threads(args.threads)  # small models: one thread is fastest on a busy CPU
    own = bool(args.csv or args.parquet)
    if not own and (args.tasks or args.features):
        raise ValueError(
            "--tasks and --features describe a table: add --csv FILE or --parquet FILE"
        )
    problem = _table_problem(args) if own else MovieLensProblem(max_users=args.max_users)
    arch = args.arch if args.arch in problem.archs else problem.archs[0]
    mb_kwargs = _multibalance_kwargs(args, problem)
    cmp = compare(
        problem,
        rules=args.rules,
        seeds=args.seeds,
        config=RunConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            arch=arch,
            level=args.level,
            progress=False,
            epochs=args.epochs,
            eval_every=args.eval_every,
            monitor=args.monitor,
            patience=args.patience,
        ),
        rule_kwargs={"multibalance": mb_kwargs} if mb_kwargs else None,
        progress=not args.no_progress,
    )
    pd = require("pandas")
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        print(cmp.summary().to_string())
    if args.output:
        cmp.table().to_csv(args.output, index=False)
        print(f"wrote {args.output}")
    return 0
