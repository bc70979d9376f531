"""The study figures draw what the run table and the paired summary hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mbviz import figures
from mbviz.study import bootstrap_ci, paired_summary


def runs_table() -> pd.DataFrame:
    """Two methods, 5 seeds, k in {-1, 0, 1}; MultiBalance is better by exactly 0.5 + k."""
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(5):
        noise = float(rng.normal())
        rows.append(("single-task", np.nan, seed, 0.0))
        for k in (-1, 0, 1):
            base = -abs(k) + noise
            rows.append(("equal", k, seed, base))
            rows.append(("multibalance", k, seed, base + 0.5 + k))
    return pd.DataFrame(
        [
            {
                "question": "imbalance",
                "dataset": "toy",
                "method": m,
                "level": "-",
                "seed": s,
                "param": "log10_scale_a",
                "value": k,
                "delta_m": d,
            }
            for m, k, s, d in rows
        ]
    )


def test_curves_are_the_means_with_their_bootstrap_intervals() -> None:
    runs = runs_table()
    fig = figures.study_curves(runs, highlight="multibalance", marker=0.0)
    assert [t.name for t in fig.data] == ["Equal", "MultiBalance"]
    eq = runs[(runs.method == "equal") & (runs.value == 1)]["delta_m"].to_numpy()
    trace = fig.data[0]
    assert list(trace.x) == [-1.0, 0.0, 1.0]
    assert trace.y[2] == pytest.approx(eq.mean())
    low, high = bootstrap_ci(eq)
    assert trace.error_y.array[2] == pytest.approx(high - eq.mean())
    assert trace.error_y.arrayminus[2] == pytest.approx(eq.mean() - low)
    assert fig.data[0].opacity < fig.data[1].opacity  # the highlighted method stands out
    assert fig.layout.shapes[0].x0 == 0.0  # the marker
    with pytest.raises(ValueError, match="metric"):
        figures.study_curves(runs, metric="nope")


def test_bars_are_the_paired_differences() -> None:
    summary = paired_summary(runs_table(), n_boot=2000)
    fig = figures.paired_bars(summary, value=1.0)
    (bar,) = fig.data
    assert list(bar.x) == ["MultiBalance"]
    assert bar.y[0] == pytest.approx(1.5)  # constant paired difference 0.5 + k
    assert bar.error_y.array[0] == pytest.approx(0.0, abs=1e-12)  # zero-width interval
    assert "p=0.0625" in bar.text[0] and "5:0" in bar.text[0]  # 5 of 5 seeds: 2 / 2^5
    with pytest.raises(ValueError, match="value"):
        figures.paired_bars(summary)  # three values: choose one
    with pytest.raises(ValueError, match="value"):
        figures.paired_bars(summary, value=7.0)


def test_tuning_curve_draws_the_search_and_one_line_per_balancer() -> None:
    curve = pd.DataFrame(
        {"runs": [1, 2, 3], "mean": [-3.0, -1.0, 0.5], "ci_low": [-4, -2, 0], "ci_high": [-2, 0, 1]}
    )
    runs = pd.DataFrame(
        {
            "method": ["static", "static_search", "single-task", "equal", "equal", "multibalance"],
            "delta_m": [9.0, 9.0, 0.0, -2.0, -4.0, 1.0],
        }
    )
    fig = figures.tuning_curve(curve, runs)
    names = [t.name for t in fig.data]
    assert names[2:] == ["Equal (1 run)", "MultiBalance (1 run)"]
    assert list(fig.data[1].y) == [-3.0, -1.0, 0.5]
    assert list(fig.data[2].y) == [-3.0, -3.0]  # equal's mean over seeds
    assert list(fig.data[0].y) == [-2, 0, 1, 0, -2, -4]  # the band: upper, then lower back


def test_sparse_tasks_shows_norms_weights_and_ne_per_task() -> None:
    runs = pd.DataFrame(
        {
            "method": ["single-task", "equal", "equal", "multibalance"],
            "dense weight": [np.nan, 1.0, 1.0, 1.0],
            "dense grad_norm": [np.nan, 2.0, 4.0, 3.0],
            "rare weight": [np.nan, 1.0, 1.0, 6.0],
            "rare grad_norm": [np.nan, 0.1, 0.3, 0.2],
            "rare ne": [0.9, 0.95, 0.97, 0.93],
        }
    )
    fig = figures.sparse_tasks(runs)
    norms = [t for t in fig.data if t.xaxis == "x"]
    assert [t.name for t in norms] == ["Equal", "MultiBalance"]
    assert list(norms[0].x) == ["dense", "rare"] and list(norms[0].y) == [3.0, pytest.approx(0.2)]
    ne = [t for t in fig.data if t.xaxis == "x3"]
    assert list(ne[0].x) == ["rare"] and ne[1].y[0] == pytest.approx(0.93)
    weights = [t for t in fig.data if t.xaxis == "x2"]
    assert list(weights[1].y) == [1.0, 6.0]
