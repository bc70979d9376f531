"""Training throughput of several methods, measured side by side in one run.

Rounds are interleaved (method A, B, C, A, B, C, ...), so machine noise hits every
method alike; each round times ``steps`` consecutive steps after the warm-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from mbkernels._validation import check_int

from ._deps import require
from .problems.base import MultiTaskProblem
from .runner import RunConfig, Trainer

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

    Returns a DataFrame: ``method, steps_per_s, std, ratio``.
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
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, tr in trainers.items():
            total = sum(tr.step()[2] for _ in range(steps))
            rates[name].append(steps / total)
    med = {n: float(np.median(r)) for n, r in rates.items()}
    first = next(iter(med.values()))
    return pd.DataFrame(
        {
            "method": list(med),
            "steps_per_s": list(med.values()),
            "std": [float(np.std(r)) for r in rates.values()],
            "ratio": [v / first for v in med.values()],
        }
    )
