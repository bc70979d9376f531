"""mbviz runner and metrics: tidy history, reproducibility, sweeps, baselines, Δm%."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mbviz import metrics as M
from mbviz.problems import SyntheticProblem
from mbviz.runner import (
    RunConfig,
    baseline_metrics,
    delta_m,
    preference_grid,
    results_table,
    single_task_baselines,
    sweep_preferences,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = RunConfig(steps=30, batch_size=64, progress=False)


def test_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounded: many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)])
    assert M.auc(y, s) == pytest.approx(brute, abs=1e-12)
    assert np.isnan(M.auc(np.ones(5), np.arange(5)))


def test_normalized_entropy_and_rmse() -> None:
    y = np.array([1, 0, 0, 1, 1.0])
    assert M.normalized_entropy(y, np.full(5, 0.6)) == pytest.approx(1.0)  # the base rate
    assert M.normalized_entropy(y, np.where(y > 0, 0.9, 0.1)) < 1.0
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))


def test_delta_m_signs() -> None:
    base = {"a": 0.8, "r": 1.0}
    hib = {"a": True, "r": False}
    # AUC +10% relative, RMSE 10% lower: both better -> +10
    assert M.delta_m({"a": 0.88, "r": 0.9}, base, hib) == pytest.approx(10.0)
    assert M.delta_m({"a": 0.72, "r": 1.1}, base, hib) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="same keys"):
        M.delta_m({"a": 1.0}, base, hib)


@pytest.mark.parametrize("level", ["representation", "parameter"])
def test_history_columns_and_reproducibility(level: str) -> None:
    p = SyntheticProblem(num_tasks=3, angle=100.0, scale_ratio=10.0)
    a = train(p, FAST, rule="multibalance", level=level, eval_every=10)
    b = train(p, FAST, rule="multibalance", level=level, eval_every=10)
    expected = {
        "step",
        "task",
        "loss",
        "norm",
        "ema",
        "weight",
        "cos_task1",
        "cos_task2",
        "cos_task3",
        "step_time",
        "rule",
        "level",
        "seed",
    }
    assert expected <= set(a.history.columns)
    assert len(a.history) == 30 * 3
    cols = [c for c in a.history.columns if c != "step_time"]
    assert a.history[cols].equals(b.history[cols])
    assert a.evals.equals(b.evals)
    assert sorted(a.evals["step"].unique()) == [10, 20, 30]
    assert a.test == b.test
    h = a.history
    assert np.allclose(h.loc[h.task == "task1", "cos_task1"], 1.0, atol=1e-5)
    assert (h["weight"] > 0).all() and h["ema"].notna().all()
    c = train(p, FAST, rule="multibalance", level=level, seed=1)
    assert not np.allclose(c.history["loss"], a.history["loss"])


def test_callback_sees_every_step() -> None:
    seen = []
    train(SyntheticProblem(), FAST, rule="multibalance", eval_every=15, callback=seen.append)
    assert [r.step for r in seen] == list(range(1, 31))
    assert seen[14].metrics is not None and seen[13].metrics is None
    assert len(seen[0].weights) == 2 and len(seen[0].cosine) == 2


def test_sweep_baselines_and_delta_m() -> None:
    p = SyntheticProblem(angle=90.0, scale_ratio=1.0, noise=0.3)
    cfg = RunConfig(steps=150, batch_size=128, lr=0.05, progress=False)
    base = baseline_metrics(single_task_baselines(p, cfg))
    assert base["task1"] == pytest.approx(0.3, rel=0.1) and base["task2"] == pytest.approx(
        0.3, rel=0.1
    )
    runs = sweep_preferences(p, cfg, n=3)
    assert [r.config.preference for r in runs] == preference_grid(2, n=3)
    rm = [r.test["task1"]["rmse"] for r in runs]
    assert rm[0] > rm[-1]  # more weight on task 1 -> lower task-1 error
    eq = train(p, cfg, rule="equal")
    # one shared feature for two orthogonal tasks: worse than single-task on average
    assert delta_m(eq, base) < 0
    table = results_table([eq, *runs])
    assert set(table.columns) == {"label", "rule", "level", "seed", "task", "metric", "value"}


def test_invalid_config() -> None:
    p = SyntheticProblem()
    with pytest.raises(ValueError, match="level"):
        train(p, FAST, level="weights")
    with pytest.raises(ValueError, match="preference"):
        train(p, FAST, preference=(1.0,))
    with pytest.raises(ValueError, match="steps"):
        train(p, FAST, steps=0)
    with pytest.raises(ValueError, match="rule"):
        train(p, FAST, rule="unknown")


def test_compare_tables_and_cli_parser() -> None:
    from mbviz.cli import build_parser
    from mbviz.experiments import compare

    p = SyntheticProblem(angle=90.0, scale_ratio=1.0, noise=0.3)
    cmp = compare(p, rules=("equal", "multibalance"), seeds=(0, 1), config=FAST)
    t = cmp.table()
    assert len(t) == 2 * 2 + 2 and {"task1 rmse", "task2 rmse", "delta_m"} <= set(t.columns)
    eq0 = next(r for r in cmp.results if r.config.rule == "equal" and r.config.seed == 0)
    assert t.loc[(t.rule == "Equal") & (t.seed == 0), "delta_m"].item() == pytest.approx(
        delta_m(eq0, cmp.baselines[0])
    )
    s = cmp.summary()
    assert list(s.index) == ["Equal", "MultiBalance", "single-task"] and "Δm%" in s.columns
    args = build_parser().parse_args(["compare", "--rules", "equal", "--seeds", "3"])
    assert args.rules == ["equal"] and args.seeds == [3] and args.steps == 300


@pytest.mark.parametrize("rule", ["metabalance_params", "mgda_params"])
def test_published_parameter_level_methods(rule: str) -> None:
    p = SyntheticProblem(num_tasks=3, angle=100.0, scale_ratio=10.0)
    r = train(p, FAST, rule=rule, level="parameter")
    assert len(r.history) == 30 * 3 and r.history["norm"].notna().all()
    assert r.label.endswith("(params)")
    if rule == "metabalance_params":  # target task 0 keeps weight 1 on every parameter
        np.testing.assert_allclose(r.history.query("task == 'task1'")["weight"], 1.0, atol=1e-6)
        assert r.history["ema"].notna().all()
    with pytest.raises(ValueError, match="parameter-level"):
        train(p, FAST, rule=rule)


def test_throughput_table() -> None:
    from mbviz.throughput import measure_throughput

    t = measure_throughput(SyntheticProblem(), config=FAST, steps=2, rounds=2, warmup=1)
    assert list(t["method"]) == [
        "plain sum",
        "MultiBalance (representation)",
        "MetaBalance (parameters)",
    ]
    assert t["ratio"].iloc[0] == 1.0 and (t["steps_per_s"] > 0).all()
