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

from .cli import (
    add_parser,
)
from .problems import (
    DATASETS,
    SPARSE_TASK,
    WAGE_FEATURES,
    WAGE_RARE_THRESHOLD,
    WAGE_TASKS,
    movielens_with_conversion,
    sparse_synthetic_table,
    study_config,
    study_problem,
    wage_problem,
    wage_table,
)
from .questions import (
    DEFAULT_BUDGET,
    SELECT_GRID,
    SELECT_SEEDS,
    SPARSE_METHODS,
    TUNING_METHODS,
    imbalance,
    positive_rate,
    runs_to_match,
    search_candidates,
    search_curve,
    select_multibalance,
    sparse,
    tuning,
)
from .results import (
    QUESTIONS,
    chosen_multibalance,
    load_manifest,
    load_results,
    results_dir,
)
from .runs import (
    DEFAULT_CONFIG,
    DEFAULT_EXPONENTS,
    DEFAULT_METHODS,
    DEFAULT_SEEDS,
    DIAGNOSTIC_COLUMNS,
    DIAGNOSTIC_SUFFIXES,
    RUN_COLUMNS,
    dataset_name,
    parse_method,
)
from .stats import (
    Study,
    bootstrap_ci,
    format_summary,
    higher_is_better,
    metric_columns,
    paired_summary,
    sign_test,
    summary_table,
)

__all__ = [
    "DATASETS",
    "DEFAULT_BUDGET",
    "DEFAULT_CONFIG",
    "DEFAULT_EXPONENTS",
    "DEFAULT_METHODS",
    "DEFAULT_SEEDS",
    "DIAGNOSTIC_COLUMNS",
    "DIAGNOSTIC_SUFFIXES",
    "QUESTIONS",
    "RUN_COLUMNS",
    "SELECT_GRID",
    "SELECT_SEEDS",
    "SPARSE_METHODS",
    "SPARSE_TASK",
    "TUNING_METHODS",
    "WAGE_FEATURES",
    "WAGE_RARE_THRESHOLD",
    "WAGE_TASKS",
    "Study",
    "add_parser",
    "bootstrap_ci",
    "chosen_multibalance",
    "dataset_name",
    "format_summary",
    "higher_is_better",
    "imbalance",
    "load_manifest",
    "load_results",
    "metric_columns",
    "movielens_with_conversion",
    "paired_summary",
    "parse_method",
    "positive_rate",
    "results_dir",
    "runs_to_match",
    "search_candidates",
    "search_curve",
    "select_multibalance",
    "sign_test",
    "sparse",
    "sparse_synthetic_table",
    "study_config",
    "study_problem",
    "summary_table",
    "tuning",
    "wage_problem",
    "wage_table",
]
