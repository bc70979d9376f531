"""What every study run table shares: its columns and defaults, and the rows one method's
training runs at one seed become (:func:`parse_method` for rule variants)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .. import metrics as M
from .._deps import require
from ..experiments import compare
from ..problems.base import MultiTaskProblem
from ..runner import RunConfig

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

#: Columns of a run table that describe training rather than test quality (not summarised
#: as metrics): the mean balance weight and gradient norm on Z per task, the static weights
#: of a search candidate, the median step time.
DIAGNOSTIC_SUFFIXES = (" weight", " grad_norm", " preference")
DIAGNOSTIC_COLUMNS = ("step_ms",)

_DATASETS = {"MovieLensProblem": "movielens", "SyntheticProblem": "synthetic"}


def dataset_name(problem: MultiTaskProblem) -> str:
    """Short name of a problem for the ``dataset`` column (``"movielens"``, ...)."""
    name = type(problem).__name__
    return _DATASETS.get(name, name.removesuffix("Problem").lower())


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
