"""Paired multi-seed studies: does a balancing rule pay compared with the plain sum?

A study trains every method at every seed of one setting, for several values of one
varied parameter, and asks for each method whether it beats ``equal`` (the plain sum of
the losses) by more than seed-to-seed noise. Runs are paired by seed: seed ``s`` of every
method starts from the same initialisation and sees the same mini-batches (see
:func:`mbviz.experiments.compare`, which trains them), so the difference between two
methods at one seed is free of the initialisation and batch-order noise they share.

Per comparison (method vs ``equal``, one metric, one parameter value) the summary gives
the mean paired difference over seeds, a percentile-bootstrap 95 % interval of that mean
(:func:`bootstrap_ci`, resampling seeds with a fixed RNG seed, so the numbers are
reproducible) and the two-sided exact sign-test p-value (:func:`sign_test`: under "no
difference" each seed is equally likely to favour either method). The bootstrap interval
says how large the effect is (with about ten seeds a percentile interval is somewhat too
narrow, so read it together with the p-value); the sign test makes no assumption about
the shape of the differences and is robust to a single wild seed. With 10 seeds the
smallest sign-test p-value is 2/1024 ≈ 0.002 (all seeds agree); 9 of 10 gives 0.021,
8 of 10 gives 0.109.

The question implemented here is **imbalance** (:func:`imbalance`): multiply one task's
training loss by ``10**k`` and see which methods keep their test metrics. ::

    python -m mbviz study imbalance --task rating -o imbalance.csv      # MovieLens
    python -m mbviz study imbalance --problem synthetic --seeds 0 1 2 --exponents -2 0 2

or from Python::

    from mbviz.study import imbalance
    st = imbalance(task="rating")          # MovieLens, 3 methods x 7 scales x 10 seeds
    st.runs                                # tidy: one row per run
    st.summary()                           # paired differences against "equal"

The tidy run table (:data:`RUN_COLUMNS`, then one column per task metric such as
``"engagement ne"``, then ``delta_m``) has one row per training run; the single-task
baselines that Δm% is measured against appear with ``method="single-task"`` and a
missing ``value``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import metrics as M
from ._deps import require
from .experiments import _multibalance_kwargs, compare
from .problems.base import MultiTaskProblem
from .problems.scaled import scale_task_loss, task_index
from .runner import RunConfig

#: The identifying columns of every row of a study's run table, in order.
RUN_COLUMNS = ("question", "dataset", "method", "level", "seed", "param", "value")
#: Methods of a study unless told otherwise; ``equal`` is the reference.
DEFAULT_METHODS = ("equal", "multibalance", "mgda_ub")
#: Seeds of a study unless told otherwise: 10 paired runs per method and setting.
DEFAULT_SEEDS = tuple(range(10))
#: Exponents ``k`` of the imbalance question's loss factor ``10**k``.
DEFAULT_EXPONENTS = (-3, -2, -1, 0, 1, 2, 3)
#: The training length of a study run unless told otherwise (as ``compare``).
DEFAULT_CONFIG = RunConfig(steps=300, batch_size=512, lr=1e-2, progress=False)

_DATASETS = {"MovieLensProblem": "movielens", "SyntheticProblem": "synthetic"}


# ---------------------------------------------------------------------- statistics
def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (NaNs dropped).

    Draws ``n_boot`` resamples of the values with replacement, takes each resample's
    mean, and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those
    means. ``seed`` fixes the resampling, so equal inputs give equal intervals.
    ``(nan, nan)`` without values; with one value (or all equal) the interval is that value.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not (isinstance(n_boot, int) and n_boot >= 1):
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def sign_test(differences: Sequence[float] | np.ndarray) -> float:
    """Two-sided exact sign-test p-value of paired ``differences`` (zeros and NaNs dropped).

    With ``n`` nonzero differences of which ``k`` are positive, the p-value is the
    probability under Binomial(n, 1/2) of an outcome at least as far from ``n/2`` as
    ``k``: ``min(1, 2 * sum_{i <= min(k, n-k)} C(n, i) / 2**n)``. 1.0 when ``n = 0``.
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[~np.isnan(d) & (d != 0)]
    n = len(d)
    if n == 0:
        return 1.0
    k = int((d > 0).sum())
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return min(1.0, 2.0 * tail / 2.0**n)


def metric_columns(runs: Any) -> list[str]:
    """The metric columns of a run table: everything but :data:`RUN_COLUMNS` (and the
    display label ``rule``)."""
    return [c for c in runs.columns if c not in (*RUN_COLUMNS, "rule")]


def higher_is_better(column: str) -> bool:
    """Direction of a run-table metric column (``"<task> <metric>"`` or ``delta_m``)."""
    if column == "delta_m":
        return True
    return M.HIGHER_IS_BETTER[column.rpartition(" ")[2]]


def paired_summary(
    runs: Any,
    *,
    reference: str = "equal",
    metrics: Sequence[str] | None = None,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
):  # -> pandas.DataFrame
    """Every method against ``reference``, paired by seed, per setting and metric.

    Args:
        runs: a study's run table (:attr:`Study.runs`, or the CSV it wrote, read back).
        reference: the method the others are compared with (default the plain sum).
        metrics: metric columns to summarise (default: every one).
        level, n_boot, seed: of :func:`bootstrap_ci`.

    Returns:
        One row per (question, dataset, param, value, method, metric) with ``n`` (seeds
        where both runs have a finite metric), ``reference_mean``, ``method_mean``,
        ``diff_mean`` (method minus reference), ``ci_low``, ``ci_high``, ``sign_p``
        (:func:`sign_test`), ``higher_is_better``, and ``wins``/``losses`` (seeds where the
        method is better/worse in that direction).
    """
    pd = require("pandas")
    cols = list(metrics) if metrics is not None else metric_columns(runs)
    missing = [c for c in cols if c not in runs.columns]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the run table")
    keys = ["question", "dataset", "param", "value"]
    table = runs[runs["method"] != "single-task"]
    out = []
    for key, g in table.groupby(keys, sort=False, dropna=False):
        ref = g[g["method"] == reference].set_index("seed")
        if ref.empty:
            continue
        for method, m in g.groupby("method", sort=False):
            if method == reference:
                continue
            m = m.set_index("seed")
            seeds = ref.index.intersection(m.index)
            for col in cols:
                a = m.loc[seeds, col].to_numpy(dtype=np.float64)
                b = ref.loc[seeds, col].to_numpy(dtype=np.float64)
                ok = np.isfinite(a) & np.isfinite(b)
                d = a[ok] - b[ok]
                up = higher_is_better(col)
                lo, hi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
                out.append(
                    {
                        **dict(zip(keys, key)),
                        "method": method,
                        "metric": col,
                        "n": int(ok.sum()),
                        "reference_mean": float(b[ok].mean()) if ok.any() else math.nan,
                        "method_mean": float(a[ok].mean()) if ok.any() else math.nan,
                        "diff_mean": float(d.mean()) if len(d) else math.nan,
                        "ci_low": lo,
                        "ci_high": hi,
                        "sign_p": sign_test(d),
                        "higher_is_better": up,
                        "wins": int(((d > 0) if up else (d < 0)).sum()),
                        "losses": int(((d < 0) if up else (d > 0)).sum()),
                    }
                )
    return pd.DataFrame(out)


@dataclass
class Study:
    """The runs of one study question: :attr:`runs` is the tidy per-run table."""

    runs: Any  # pandas.DataFrame

    def summary(self, reference: str = "equal", **kwargs: Any):  # -> pandas.DataFrame
        """:func:`paired_summary` of the runs (keyword arguments pass through)."""
        return paired_summary(self.runs, reference=reference, **kwargs)

    def table(self, metric: str = "delta_m", reference: str = "equal", **kwargs: Any):
        """:func:`summary_table` of one metric: parameter values as rows, methods as
        columns (keyword arguments go to :func:`paired_summary`)."""
        return summary_table(self.summary(reference, metrics=[metric], **kwargs), metric)

    def to_csv(self, path: Any) -> None:
        """Write the run table as CSV (read it back with ``pandas.read_csv``)."""
        self.runs.to_csv(path, index=False)


def dataset_name(problem: MultiTaskProblem) -> str:
    """Short name of a problem for the ``dataset`` column (``"movielens"``, ...)."""
    name = type(problem).__name__
    return _DATASETS.get(name, name.removesuffix("Problem").lower())


# ---------------------------------------------------------------------- questions
def imbalance(
    problem: MultiTaskProblem | None = None,
    *,
    task: int | str = 0,
    exponents: Sequence[float] = DEFAULT_EXPONENTS,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    config: RunConfig | None = None,
    rule_kwargs: dict[str, dict[str, Any]] | None = None,
    dataset: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Study:
    """The imbalance question: one task's training loss times ``10**k``, per ``k``.

    For each seed, the single-task baselines are trained once on the unscaled problem;
    then every method is trained on :func:`~mbviz.problems.scale_task_loss` of the
    problem for every exponent. Test metrics are always those of the unscaled task (the
    scale changes the training signal only), and Δm% is against the unscaled baselines.
    With ``equal`` (the plain sum) ``k`` decides which task owns the shared layers; a
    rule that normalises gradient magnitudes should give the same result at every ``k``.

    Args:
        problem: default :class:`~mbviz.problems.MovieLensProblem` (all users).
        task: the scaled task, a name or an index.
        exponents: the ``k`` of the factor ``10**k`` (the ``value`` column).
        methods: rule names of :data:`mbkernels.RULES`, or parameter-level methods of
            :data:`mbviz.runner.PARAM_METHODS` (e.g. ``"metabalance_params"``).
        seeds: paired seeds (the same for every method and exponent).
        config: the shared run config (default :data:`DEFAULT_CONFIG`); ``overrides``
            change its fields.
        rule_kwargs: per-method hyperparameters.
        dataset: the ``dataset`` column (default: :func:`dataset_name`).
        progress: one progress bar over every run.
    """
    pd = require("pandas")
    tqdm = require("tqdm.auto").tqdm
    if problem is None:
        from .problems import MovieLensProblem

        problem = MovieLensProblem()
    t = task_index(problem, task)
    if not methods:
        raise ValueError("methods must name at least one method")
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    base = replace(config or DEFAULT_CONFIG, **overrides, progress=False)
    name = dataset if dataset is not None else dataset_name(problem)
    param = f"log10_scale_{problem.task_names[t]}"
    bar = tqdm(
        total=len(seeds) * (problem.num_tasks + len(exponents) * len(methods)),
        desc="imbalance",
        disable=not progress,
    )
    frames = []
    for seed in seeds:
        bar.set_postfix(seed=seed, run="single-task")
        single = compare(problem, rules=(), seeds=(seed,), config=base, progress=False)
        bar.update(problem.num_tasks)
        frames.append(single.table().assign(value=math.nan))
        for k in exponents:
            bar.set_postfix(seed=seed, k=k)
            scaled = scale_task_loss(problem, t, 10.0 ** float(k))
            cmp = compare(
                scaled,
                rules=methods,
                seeds=(seed,),
                config=base,
                rule_kwargs=rule_kwargs,
                progress=False,
                baseline_runs=single.baseline_runs,
            )
            tab = cmp.table()
            frames.append(tab[tab["method"] != "single-task"].assign(value=float(k)))
            bar.update(len(methods))
    bar.close()
    runs = pd.concat(frames, ignore_index=True).assign(
        question="imbalance", dataset=name, param=param
    )
    runs = runs.drop(columns="rule")
    metrics = [c for c in runs.columns if c not in RUN_COLUMNS]
    runs = runs[[*RUN_COLUMNS, *metrics]]
    order = {m: i for i, m in enumerate(["single-task", *methods])}
    runs = runs.sort_values(
        ["value", "method", "seed"],
        key=lambda s: s.map(order) if s.name == "method" else s,
        na_position="first",
        kind="stable",
    )
    return Study(runs.reset_index(drop=True))


# ---------------------------------------------------------------------- command line
def add_parser(sub: Any) -> None:
    """Register ``study`` (with one subcommand per question) on ``python -m mbviz``."""
    p = sub.add_parser("study", help="paired multi-seed studies: does a rule beat the plain sum?")
    questions = p.add_subparsers(dest="question", required=True)
    q = questions.add_parser(
        "imbalance",
        help="one task's loss times 10**k: which methods keep their test metrics?",
        description=(
            "Train every method at every seed on the problem with one task's training loss "
            "times 10**k, for every k; print paired differences against 'equal' (mean, "
            "bootstrap 95%% interval, sign-test p) for Δm%% and the primary metrics."
        ),
    )
    q.add_argument("--problem", choices=("movielens", "synthetic"), default="movielens")
    q.add_argument("--task", default=None, help="the scaled task's name (default: the first)")
    q.add_argument(
        "--exponents", nargs="+", type=float, default=list(DEFAULT_EXPONENTS), metavar="K"
    )
    q.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    seeds = q.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", nargs="+", type=int, help="the paired seeds (default 0..9)")
    seeds.add_argument("--num-seeds", type=int, help="seeds 0..N-1")
    q.add_argument("--steps", type=int, default=DEFAULT_CONFIG.steps)
    q.add_argument("--batch-size", type=int, default=DEFAULT_CONFIG.batch_size)
    q.add_argument("--lr", type=float, default=DEFAULT_CONFIG.lr)
    q.add_argument("--arch", default=None, help="default: the problem's first architecture")
    q.add_argument("--max-users", type=int, default=None, help="a MovieLens subset (quick runs)")
    q.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    q.add_argument(
        "--reference",
        default=None,
        metavar="TASK",
        help="MultiBalance's reference task (default: its default, the first task)",
    )
    q.add_argument("--relax", type=float, default=None, help="MultiBalance's relax factor")
    q.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    q.add_argument("-o", "--output", default=None, help="write the run table as CSV")
    q.add_argument("--summary-output", default=None, help="write the full summary as CSV")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_imbalance_cli)


def _problem(args: argparse.Namespace) -> MultiTaskProblem:
    if args.problem == "synthetic":
        from .problems import SyntheticProblem

        # balanced to start with: the study's factor is the only imbalance
        return SyntheticProblem(scale_ratio=1.0)
    from .problems import MovieLensProblem

    return MovieLensProblem(max_users=args.max_users)


def _imbalance_cli(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    problem = _problem(args)
    if args.num_seeds is not None:
        if args.num_seeds < 1:
            raise ValueError(f"--num-seeds must be >= 1, got {args.num_seeds}")
        seeds: Sequence[int] = range(args.num_seeds)
    else:
        seeds = args.seeds if args.seeds is not None else DEFAULT_SEEDS
    if args.arch is not None and args.arch not in problem.archs:
        raise ValueError(f"--arch must be one of {list(problem.archs)}, got {args.arch!r}")
    mb_kwargs = _multibalance_kwargs(args, problem)
    study = imbalance(
        problem,
        task=args.task if args.task is not None else 0,
        exponents=args.exponents,
        methods=args.methods,
        seeds=list(seeds),
        config=replace(
            DEFAULT_CONFIG,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            arch=args.arch or problem.archs[0],
        ),
        rule_kwargs={"multibalance": mb_kwargs} if mb_kwargs else None,
        progress=not args.no_progress,
    )
    summary = study.summary(n_boot=args.bootstrap)
    if args.output:
        study.to_csv(args.output)
    if args.summary_output:
        summary.to_csv(args.summary_output, index=False)
    primary = {f"{t} {M.PRIMARY_METRIC[k]}" for t, k in zip(problem.task_names, problem.task_kinds)}
    print(format_summary(summary[summary["metric"].isin({"delta_m", *primary})]))
    for path in (args.output, args.summary_output):
        if path:
            print(f"wrote {path}")
    return 0


def summary_table(summary: Any, metric: str = "delta_m", *, digits: int = 3):
    """One metric of a :func:`paired_summary` as a grid: one row per (param, value), one
    column per method, each cell ``"diff [ci_low, ci_high] p=sign_p"``."""
    t = summary[summary["metric"] == metric]
    if t.empty:
        raise ValueError(f"metric {metric!r} is not in the summary: {sorted(set(summary.metric))}")
    cells = t.assign(
        cell=[
            f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] p={p:.3f}"
            for d, lo, hi, p in zip(t["diff_mean"], t["ci_low"], t["ci_high"], t["sign_p"])
        ]
    )
    grid = cells.pivot(index=["param", "value"], columns="method", values="cell")
    return grid[list(dict.fromkeys(t["method"]))]


def format_summary(summary: Any, *, digits: int = 4) -> str:
    """A paired summary as text: one line per (value, method, metric) with the mean
    difference, its interval, the sign-test p-value and wins:losses."""
    if summary.empty:
        return "(no paired comparisons: is the reference method among the methods?)"
    t = summary.copy()
    t["diff (95% CI)"] = [
        f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
        for d, lo, hi in zip(t["diff_mean"], t["ci_low"], t["ci_high"])
    ]
    t["sign p"] = [f"{p:.3f}" for p in t["sign_p"]]
    t["wins:losses"] = [f"{w}:{l}" for w, l in zip(t["wins"], t["losses"])]
    cols = ["param", "value", "method", "metric", "n", "diff (95% CI)", "sign p", "wins:losses"]
    return str(t[cols].to_string(index=False))
