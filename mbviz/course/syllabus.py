"""The map of the course: one entry per notebook, shown by notebook 00.

The one list of the notebooks, their order, titles and teaching times; the headless
report (:mod:`mbviz.course.sections`) takes its section titles and files from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Notebook:
    file: str
    title: str
    story: str
    minutes: int  # suggested teaching time in a workshop

    @property
    def key(self) -> str:
        """The notebook's number: ``"03"`` for ``03_pareto_fronts.ipynb``."""
        return self.file[:2]


NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook(
        "00_start_here.ipynb", "Start here", "check the environment; one MultiBalance step", 10
    ),
    Notebook(
        "01_gradient_conflict.ipynb",
        "Gradient conflict and negative transfer",
        "when tasks pull the shared layers apart, and what that costs",
        20,
    ),
    Notebook(
        "02_multibalance_step_by_step.ipynb",
        "MultiBalance step by step",
        "representation gradients, EMA, reweighting, relax",
        25,
    ),
    Notebook(
        "03_pareto_fronts.ipynb",
        "Pareto fronts on synthetic tasks",
        "a weight sweep against the balancing rules, on a known front",
        20,
    ),
    Notebook(
        "04_stochastic_stability.ipynb",
        "Stochastic stability",
        "why the moving average: noisy batches, jerky weights",
        15,
    ),
    Notebook(
        "05_movielens_recommender.ipynb",
        "A real multi-task recommender",
        "MovieLens, three tasks, per-task KPI monitoring, throughput",
        25,
    ),
    Notebook(
        "06_inside_the_triton_kernel.ipynb",
        "Inside the Triton kernel",
        "the two passes, interpreter on CPU, compiled on GPU, bytes moved",
        20,
    ),
    Notebook(
        "07_representation_vs_parameter_level.ipynb",
        "Representation vs parameter level",
        "the throughput a backward per task costs, measured live",
        15,
    ),
    Notebook(
        "08_does_it_pay.ipynb",
        "Does it pay?",
        "when balancing helps: imbalance, a static-weight search, a rare task; paired seeds",
        20,
    ),
    Notebook(
        "09_your_own_model.ipynb",
        "MultiBalance in your own model",
        "the lines to change in a training loop, where the fork goes, tuning by validation, cost",
        20,
    ),
)


def notebook(key: str) -> Notebook:
    """The notebook numbered ``key`` (``"00"`` to the last)."""
    for nb in NOTEBOOKS:
        if nb.key == key:
            return nb
    keys = ", ".join(repr(nb.key) for nb in NOTEBOOKS)
    raise ValueError(f"key must be one of {keys}, got {key!r}")


def course_map(notebook_dir: str | Path | None = None) -> Any:
    """The course as a pandas DataFrame (with an ``available`` column if a folder is given)."""
    import pandas as pd

    rows = [
        {"notebook": n.file, "title": n.title, "story": n.story, "minutes": n.minutes}
        for n in NOTEBOOKS
    ]
    df = pd.DataFrame(rows)
    if notebook_dir is not None:
        df["available"] = [(Path(notebook_dir) / n.file).exists() for n in NOTEBOOKS]
    return df
