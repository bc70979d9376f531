"""mbviz.study: the paired statistics against independent references, pairing by seed,
the imbalance question's loss scaling, the run table and the ``study`` command line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mbviz.cli import main
from mbviz.problems import ScaledLossProblem, SyntheticProblem, TabularProblem, scale_task_loss
from mbviz.runner import RunConfig, train
from mbviz.study import (
    RUN_COLUMNS,
    bootstrap_ci,
    imbalance,
    paired_summary,
    sign_test,
)

from .tabular_data import synthetic_table

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = RunConfig(steps=30, batch_size=64, lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def synth() -> SyntheticProblem:
    return SyntheticProblem(angle=120.0, scale_ratio=1.0, noise=0.3, eval_size=256)


# ---------------------------------------------------------------------- statistics
def test_bootstrap_of_constant_differences_is_that_constant() -> None:
    lo, hi = bootstrap_ci([0.25] * 10)
    assert lo == pytest.approx(0.25, abs=1e-12) and hi == pytest.approx(0.25, abs=1e-12)


def test_bootstrap_two_values_has_the_exact_percentiles() -> None:
    # resample means of [0, 1] are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 2.5 %
    # and 97.5 % percentiles are 0 and 1
    assert bootstrap_ci([0.0, 1.0], n_boot=4000) == (0.0, 1.0)


def test_bootstrap_matches_scipy_and_is_reproducible() -> None:
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(3).normal(0.5, 1.0, size=12)
    ours = bootstrap_ci(x, n_boot=20_000, seed=1)
    ref = stats.bootstrap(
        (x,), np.mean, method="percentile", n_resamples=20_000, random_state=7
    ).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.03)
    assert bootstrap_ci(x, n_boot=20_000, seed=1) == ours  # fixed RNG seed
    assert bootstrap_ci([np.nan, 2.0]) == (2.0, 2.0)  # NaNs dropped
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(x, level=1.5)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 13])
def test_sign_test_matches_binomtest(n: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    for k in range(n + 1):
        diffs = [1.0] * k + [-0.5] * (n - k) + [0.0, np.nan]  # zeros and NaNs dropped
        assert sign_test(diffs) == pytest.approx(stats.binomtest(k, n, 0.5).pvalue, rel=1e-12)
    assert sign_test([]) == 1.0


def test_paired_summary_by_hand() -> None:
    rows = []
    for seed, (eq, mb) in enumerate([(1.0, 0.8), (1.0, 0.9), (1.0, 1.1), (1.0, np.nan)]):
        for method, rmse in (("equal", eq), ("mb", mb)):
            rows.append(
                dict(
                    question="q",
                    dataset="d",
                    method=method,
                    level="representation",
                    seed=seed,
                    param="p",
                    value=0.0,
                    **{"a rmse": rmse, "delta_m": -10 * rmse},
                )
            )
    s = paired_summary(pd.DataFrame(rows), n_boot=500).set_index("metric")
    assert list(s["method"]) == ["mb", "mb"]
    r = s.loc["a rmse"]
    assert r["n"] == 3 and r["diff_mean"] == pytest.approx(-0.2 / 3)
    assert (r["wins"], r["losses"]) == (2, 1) and not r["higher_is_better"]  # lower rmse wins
    assert r["sign_p"] == pytest.approx(1.0)
    assert r["ci_low"] <= r["diff_mean"] <= r["ci_high"]
    d = s.loc["delta_m"]
    assert d["higher_is_better"] and (d["wins"], d["losses"]) == (2, 1)


# ---------------------------------------------------------------------- loss scaling
def test_scaled_loss_problem_scales_training_losses_only(synth) -> None:
    scaled = scale_task_loss(synth, "task2", 1e3)
    assert isinstance(scaled, ScaledLossProblem) and scaled.factors == (1.0, 1e3)
    assert scaled.loss_scales == (1.0, 1e3) and synth.loss_scales == (1.0, 1.0)
    batch = synth.sample_batch(16, torch.Generator().manual_seed(0))
    outs = [torch.zeros(16), torch.zeros(16)]
    plain, big = synth.task_losses(outs, batch), scaled.task_losses(outs, batch)
    assert torch.equal(big[0], plain[0]) and torch.allclose(big[1], 1e3 * plain[1])
    assert scaled.split("test") is synth.split("test")
    for bad, match in [("ghost", "task must be one of"), (2, "index in \\[0, 1\\]")]:
        with pytest.raises(ValueError, match=match):
            scale_task_loss(synth, bad, 10.0)
    with pytest.raises(ValueError, match="factor"):
        scale_task_loss(synth, 0, -1.0)
    with pytest.raises(ValueError, match="num_tasks=2"):
        ScaledLossProblem(synth, [1.0])


def test_imbalance_k0_is_the_unscaled_run_and_other_k_change_equal(synth) -> None:
    st = imbalance(
        synth,
        task=1,
        exponents=(-2, 0, 2),
        methods=("equal",),
        seeds=(0,),
        config=TINY,
        progress=False,
    )
    runs = st.runs.set_index("value")
    plain = train(synth, TINY, rule="equal", seed=0)
    assert runs.loc[0.0, "task2 rmse"] == plain.test["task2"]["rmse"]
    assert runs.loc[0.0, "task1 rmse"] == plain.test["task1"]["rmse"]
    assert runs.loc[2.0, "task1 rmse"] != plain.test["task1"]["rmse"]
    assert runs.loc[-2.0, "task2 rmse"] != plain.test["task2"]["rmse"]


# ---------------------------------------------------------------------- pairing, table
def test_methods_at_one_seed_see_the_same_init_and_batches(synth) -> None:
    # the fixed rule with unit weights computes the plain sum: paired runs must agree
    st = imbalance(
        synth,
        exponents=(0, 1),
        methods=("equal", "linear"),
        seeds=(0, 1),
        config=TINY,
        rule_kwargs={"linear": {"preferences": [1.0, 1.0]}},
        progress=False,
    )
    s = st.summary(n_boot=200)
    # 2 values x (two task metrics, test and validation Δm%)
    assert len(s) == 2 * 4 and (s["diff_mean"] == 0).all() and (s["sign_p"] == 1).all()
    assert (s["n"] == 2).all() and (s["ci_low"] == 0).all() and (s["ci_high"] == 0).all()
    eq = st.runs[(st.runs["method"] == "equal") & (st.runs["value"] == 0)].set_index("seed")
    assert eq.loc[0, "task1 rmse"] != eq.loc[1, "task1 rmse"]  # seeds do differ


def test_run_table_columns_and_binary_tasks_report_ne() -> None:
    problem = TabularProblem(
        synthetic_table(n=200),
        {"y_small": "regression", "clicked": "binary"},
        features=["x1", "x2", "colour"],
        seed=0,
    )
    st = imbalance(
        problem,
        task="clicked",
        exponents=(0, 3),
        seeds=(0, 1),
        config=TINY,
        methods=("equal", "multibalance", "metabalance_params"),
        progress=False,
    )
    runs = st.runs
    metrics = ["y_small rmse", "clicked auc", "clicked ne", "clicked logloss", "delta_m"]
    metrics += ["val_delta_m"]  # Δm% of the validation metrics
    assert list(runs.columns) == [*RUN_COLUMNS, *metrics, "step_ms"]  # step_ms: diagnostic
    assert len(runs) == 2 * (1 + 2 * 3)  # per seed: one single-task row, 2 k x 3 methods
    assert set(runs["question"]) == {"imbalance"} and set(runs["dataset"]) == {"tabular"}
    assert set(runs["param"]) == {"log10_scale_clicked"}
    single = runs[runs["method"] == "single-task"]
    assert single["value"].isna().all() and (single["delta_m"] == 0).all()
    trained = runs[runs["method"] != "single-task"]
    assert np.isfinite(trained[metrics].to_numpy()).all() and (trained["step_ms"] > 0).all()
    assert 0 < trained["clicked ne"].min() and trained["clicked ne"].max() < 2
    levels = dict(zip(trained["method"], trained["level"]))
    assert levels["metabalance_params"] == "parameter" and levels["equal"] == "representation"
    s = st.summary(n_boot=200)
    assert set(s["method"]) == {"multibalance", "metabalance_params"}
    assert len(s) == 2 * 2 * len(metrics)
    grid = st.table("clicked ne", n_boot=200)
    assert list(grid.columns) == ["multibalance", "metabalance_params"] and len(grid) == 2
    assert all(" p=" in cell for cell in grid.to_numpy().ravel())


# ---------------------------------------------------------------------- command line
def test_cli_study_imbalance_smoke(tmp_path, capsys) -> None:
    runs_csv, summary_csv = tmp_path / "runs.csv", tmp_path / "summary.csv"
    argv = ["study", "imbalance", "--problem", "synthetic", "--task", "task2", "--seeds", "0"]
    argv += ["1", "--exponents", "0", "1", "--steps", "5", "--batch-size", "16"]
    argv += ["--reference", "task2", "--relax", "0.5"]
    argv += ["--bootstrap", "100", "-o", str(runs_csv), "--summary-output", str(summary_csv)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "delta_m" in captured.out and "mgda_ub" in captured.out and "sign p" in captured.out
    assert "imbalance" in captured.err  # the progress bar
    runs = pd.read_csv(runs_csv)
    assert list(runs.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS)
    assert len(runs) == 2 * (1 + 2 * 3)  # one single-task row per seed
    summary = pd.read_csv(summary_csv)
    assert set(summary["method"]) == {"multibalance", "mgda_ub"}
    assert main(["study", "imbalance", "--problem", "synthetic", "--task", "ghost"]) == 2
    assert "task must be one of ['task1', 'task2']" in capsys.readouterr().err
