"""mbviz: the teaching and exploration layer of MultiBalance Lab.

Everything a course notebook shows comes from here: synthetic and real
multi-task problems, models, an experiment runner that records what happens
inside training, plotly figures and ipywidgets dashboards.

Submodules are imported lazily, so ``import mbviz`` is cheap and does not need
the optional ``[viz]`` dependencies until a piece that uses them is touched::

    import mbviz
    prob = mbviz.problems.SyntheticProblem(angle=120, scale_ratio=10)
    res = mbviz.runner.train(prob, mbviz.runner.RunConfig(rule="multibalance", steps=200))
    mbviz.figures.magnitudes_and_weights(res.history).show()

Your own table: :class:`mbviz.problems.TabularProblem`; your own training loop:
:class:`mbviz.StatsRecorder` / :func:`mbviz.history_from_stats` (docs/own_data.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_SUBMODULES = (
    "course",
    "data",
    "experiments",
    "figures",
    "metrics",
    "models",
    "problems",
    "recorder",
    "rules",
    "runner",
    "stability",
    "study",
    "taskwise",
    "throughput",
    "widgets",
)

if TYPE_CHECKING:  # pragma: no cover
    from . import (  # noqa: F401
        data,
        experiments,
        figures,
        metrics,
        models,
        problems,
        recorder,
        rules,
        runner,
        stability,
        study,
        taskwise,
        throughput,
        widgets,
    )
    from .recorder import StatsRecorder, history_from_stats  # noqa: F401

#: Top-level names that live in a submodule (imported on first use).
_NAMES = {"StatsRecorder": "recorder", "history_from_stats": "recorder"}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # one distribution, one version: mbkernels'
        from mbkernels import __version__

        return __version__
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mbviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "__version__", *_SUBMODULES, *_NAMES])


__all__ = ["__version__", *_SUBMODULES, *_NAMES]
