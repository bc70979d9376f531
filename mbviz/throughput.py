"""Training throughput of several methods on a course problem, measured side by side.

Rounds are interleaved by :func:`mbviz.timing.interleaved` (the timing the benchmarks use
too): each round times ``steps`` consecutive training steps of every method, in a rotating
order, so machine noise hits every method alike.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from mbkernels.validation import check_int

from ._deps import require
from .problems.base import MultiTaskProblem
from .runner import RunConfig, Trainer
from .timing import interleaved

#: Default methods: name -> RunConfig overrides.
DEFAULT_METHODS: dict[str, dict[str, Any]] = {
    "plain sum": {"rule": "none"},
    "MultiBalance (representation)": {"rule": "multibalance"},
    "MetaBalance (parameters)": {"rule": "metabalance_params", "level": "parameter"},
}


def measure_throughput(
    problem: MultiTaskProblem,
    methods: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    config: RunConfig | None = None,
    steps: int = 10,
    rounds: int = 5,
    warmup: int = 3,
):  # -> pandas.DataFrame
    """Steps per second of each method (median over rounds) and the ratio to the first.

    A step is :meth:`mbviz.runner.Trainer.step`: drawing the batch, forward, backward and
    the optimizer. Returns a DataFrame: ``method, steps_per_s, std, ratio``.
    """
    pd = require("pandas")
    check_int("steps", steps, low=1)
    check_int("rounds", rounds, low=1)
    check_int("warmup", warmup, low=0)
    methods = methods or DEFAULT_METHODS
    base = replace(config or RunConfig(), progress=False)
    trainers = {name: Trainer(problem, replace(base, **dict(kw))) for name, kw in methods.items()}
    for tr in trainers.values():
        for _ in range(warmup):
            tr.step()

    def block(tr: Trainer) -> Callable[[], None]:
        def run() -> None:
            for _ in range(steps):
                tr.step()

        return run

    timings = interleaved({n: block(tr) for n, tr in trainers.items()}, rounds=rounds, warmup=0)
    rates = {n: [steps / s for s in tm.seconds] for n, tm in timings.items()}
    med = {n: statistics.median(r) for n, r in rates.items()}
    first = next(iter(med.values()))
    return pd.DataFrame(
        {
            "method": list(med),
            "steps_per_s": list(med.values()),
            "std": [statistics.pstdev(r) for r in rates.values()],
            "ratio": [v / first for v in med.values()],
        }
    )
