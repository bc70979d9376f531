"""Each notebook's experiment setup, written once.

A notebook builds its experiment from here, and so does its section of the headless
report (:mod:`mbviz.course.sections`), at the same ``SIZE`` (1 = classroom size).
Notebook 00's run is :data:`mbviz.course.warmup.NOTEBOOK_RUN`, notebook 04's problem
:func:`mbviz.stability.default_problem`, notebook 06's byte counts
:mod:`mbviz.course.traffic`.
"""

from __future__ import annotations

from typing import Any

from mbviz.dlrm import DLRMConfig
from mbviz.dlrm_throughput import ThroughputConfig

from ..problems import QuadraticToy, SyntheticProblem
from ..runner import RunConfig

# -- 01 gradient conflict: two tasks, one shared linear feature, label noise 0.5


def conflict_problem(
    angle: float = 120.0, *, scale_ratio: float = 1.0, rep_dim: int = 1
) -> SyntheticProblem:
    """Two regression tasks whose directions are ``angle`` degrees apart."""
    return SyntheticProblem(
        num_tasks=2, angle=angle, scale_ratio=scale_ratio, noise=0.5, rep_dim=rep_dim
    )


#: Training arguments of notebook 01's runs (besides ``steps``).
CONFLICT_RUN: dict[str, Any] = {"progress": False, "batch_size": 128, "lr": 0.02}


def conflict_steps(size: int) -> int:
    return 120 * size


# -- 02 MultiBalance step by step: three tasks with loss scales 1, 10, 100


def imbalance_problem() -> SyntheticProblem:
    return SyntheticProblem(num_tasks=3, angle=120.0, scale_ratio=100.0, noise=0.5, rep_dim=4)


#: Training arguments of notebook 02's MultiBalance run (besides ``steps``).
IMBALANCE_RUN: dict[str, Any] = {"arch": "mlp", "batch_size": 128, "progress": False}


def imbalance_steps(size: int) -> int:
    return 100 * size


# -- 03 Pareto fronts: the quadratic toy with a known front

#: The two starting points of the paths on the toy.
PARETO_STARTS: tuple[tuple[float, float], ...] = ((0.0, 2.0), (-2.0, -1.0))


def pareto_toy(scale_ratio: float = 10.0) -> QuadraticToy:
    return QuadraticToy(scale_ratio=scale_ratio)


def pareto_path(size: int) -> dict[str, Any]:
    """Keyword arguments of :meth:`QuadraticToy.trajectory`: steps and learning rate."""
    return {"steps": 150 * size, "lr": 0.02}


# -- 04 stochastic stability (the problem: mbviz.stability.default_problem)


def stability_warmup_steps(size: int) -> int:
    """Training steps before the model is frozen and the batches are resampled."""
    return 100 * size


def stability_steps(size: int) -> int:
    """Mini-batches drawn per curve at the frozen model."""
    return 60 * size


# -- 05 MovieLens


def movielens_users(size: int) -> int | None:
    """Users loaded: a subset at classroom size, all from size 5."""
    return None if size >= 5 else 150 * size


def movielens_config(size: int) -> RunConfig:
    return RunConfig(steps=100 * size, batch_size=512, eval_every=10, progress=False)


# -- 07 representation vs parameter level: a small DLRM-style model

THROUGHPUT_MODEL = DLRMConfig(
    rows_per_table=2000, embed_dim=32, bottom=(128,), shared=(256, 128), tower=(32,)
)

#: The methods compared, with their labels.
THROUGHPUT_LABELS: dict[str, str] = {
    "sum": "plain sum",
    "multibalance": "MultiBalance (representation)",
    "param_metabalance": "MetaBalance (parameters)",
}


def throughput_config(size: int) -> ThroughputConfig:
    return ThroughputConfig(
        tasks=(2, 4, 8), batch=512 * size, rounds=3, min_sample_s=0.1, memory=False,
        methods=tuple(THROUGHPUT_LABELS), model=THROUGHPUT_MODEL,
    )  # fmt: skip


#: 07's fixed-cost section: the methods, with their labels (the bare forks isolate what the
#: fork itself costs: ``fork_only`` adds the T gradients up, ``fork_hold`` passes one on).
FIXED_COST_LABELS: dict[str, str] = {
    "sum": "plain sum",
    "multibalance": "MultiBalance",
    "fork_only": "bare fork (sum of the T gradients)",
    "fork_hold": "bare fork (one gradient passed on)",
}

#: 07's fixed-cost section: batch sizes from a course-sized step to a larger one.
FIXED_COST_BATCHES = (32, 256, 2048)


def fixed_cost_config(batch: int) -> ThroughputConfig:
    """The DLRM of 07 at T = 4 and ``batch`` rows: the plain sum, MultiBalance and the two
    bare forks, 9 interleaved rounds of at least 0.1 s each."""
    return ThroughputConfig(
        tasks=(4,), batch=batch, rounds=9, min_sample_s=0.1, memory=False,
        methods=tuple(FIXED_COST_LABELS), model=THROUGHPUT_MODEL,
    )  # fmt: skip


# -- 08 does it pay: the live rerun of the imbalance question


def live_imbalance(size: int, *, progress: bool = False):  # -> mbviz.study.Study
    """The imbalance question at classroom size: the synthetic problem, task 0's loss
    times ``10^k`` for ``k`` in {-2, 0, 2}, the plain sum against MultiBalance with the
    shipped study's validation-chosen settings, ``3 * size`` seeds of ``100 * size`` steps."""
    from ..study import chosen_multibalance, imbalance, study_config, study_problem

    return imbalance(
        study_problem("synthetic"),
        task=0,
        exponents=(-2, 0, 2),
        methods=("equal", "multibalance"),
        seeds=range(3 * size),
        config=study_config("synthetic"),
        rule_kwargs={"multibalance": chosen_multibalance("synthetic")},
        steps=100 * size,
        progress=progress,
    )
