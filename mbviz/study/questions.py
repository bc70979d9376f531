"""The three questions (imbalance, tuning, sparse tasks) and MultiBalance's validation
sweep, each a function that trains every method at every paired seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .._deps import require
from ..problems.base import MultiTaskProblem
from ..problems.scaled import scale_task_loss, task_index
from ..runner import RunConfig
from .runs import (
    DEFAULT_CONFIG,
    DEFAULT_EXPONENTS,
    DEFAULT_METHODS,
    DEFAULT_SEEDS,
    _finish,
    _rows,
    _setup,
    _single,
    dataset_name,
)
from .stats import Study, bootstrap_ci, sign_test


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
        from ..problems import MovieLensProblem

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
        from ..problems import MovieLensProblem

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
