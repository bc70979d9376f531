"""``python -m mbviz compare --csv``: the table, the CSV output, and one-line errors
that name the column; the widgets on a TabularProblem."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mbviz.cli import main
from mbviz.problems import TabularProblem
from mbviz.runner import RunConfig

from .tabular_data import FEATURES, TASKS, synthetic_table

pytestmark = pytest.mark.usefixtures("one_thread")

TASK_ARGS = ["y_small:regression", "y_big:regression", "clicked:binary"]


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("table") / "table.csv"
    synthetic_table().to_csv(path, index=False)
    return str(path)


def test_compare_csv_prints_the_table_and_writes_runs(csv_path, tmp_path, capsys) -> None:
    out = tmp_path / "runs.csv"
    argv = ["compare", "--csv", csv_path, "--tasks", *TASK_ARGS, "--features", *FEATURES]
    argv += ["--time-col", "day", "--steps", "20", "--batch-size", "32", "--seeds", "0"]
    argv += ["--rules", "equal", "multibalance", "--relax", "1", "--reference", "y_big"]
    argv += ["-o", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Δm%" in captured.out and "y_big rmse" in captured.out and "clicked auc" in captured.out
    assert "compare" in captured.err  # the progress bar over runs
    runs = pd.read_csv(out)
    assert list(runs["rule"]) == ["Equal", "MultiBalance", "single-task"]
    assert {"y_small rmse", "y_big rmse", "clicked auc", "delta_m"} <= set(runs.columns)
    assert np.isfinite(runs["delta_m"]).all()


@pytest.mark.parametrize(
    ("change", "tasks", "message"),
    [
        (None, ["ghost:regression"], "task column 'ghost' is not in the table"),
        (
            lambda d: d.assign(y_small="a"),
            ["y_small:regression"],
            "task 'y_small' \\(regression\\) must be numeric",
        ),
        (lambda d: d.assign(clicked=3), ["clicked:binary"], "binary task 'clicked' must hold"),
        (lambda d: d.assign(y_big=np.nan), ["y_big:regression"], "task 'y_big' .*no labels"),
        (lambda d: d.assign(x1=1.0), ["y_small:regression"], "feature 'x1' is constant"),
        (None, ["y_small:ordinal"], "kind of column 'y_small' must be one of"),
        (None, ["y_small"], "must be COLUMN:KIND"),
    ],
)
def test_compare_csv_errors_name_the_column(change, tasks, message, tmp_path, capsys) -> None:
    df = synthetic_table()
    if change is not None:
        df = change(df)
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    argv = ["compare", "--csv", str(path), "--tasks", *tasks, "--features", *FEATURES]
    assert main([*argv, "--steps", "2", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_compare_table_options_need_a_table(capsys) -> None:
    assert main(["compare", "--tasks", "a:binary"]) == 2
    assert "--csv" in capsys.readouterr().err


def test_training_monitor_on_a_table() -> None:
    pytest.importorskip("ipywidgets")
    from mbviz.widgets import TrainingMonitor

    prob = TabularProblem(synthetic_table(), TASKS, FEATURES, masks={"bought": "has_bought"})
    mon = TrainingMonitor(prob, RunConfig(rule="multibalance", progress=False), update_every=2)
    res = mon.run(epochs=1, batch_size=64)
    assert res.last_step == 5 and len(mon.figure.data[0].x) > 0


def test_stability_explorer_on_a_table() -> None:
    pytest.importorskip("ipywidgets")
    from mbviz.widgets import StabilityExplorer

    prob = TabularProblem(synthetic_table(), TASKS, FEATURES, masks={"bought": "has_bought"})
    explorer = StabilityExplorer(problem=prob)
    assert len(explorer.figure.data) == 2 and len(explorer.figure.data[0].y) > 0
