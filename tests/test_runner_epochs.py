"""The runner's epochs and early stopping, on a TabularProblem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbviz.experiments import compare
from mbviz.problems import SyntheticProblem, TabularProblem
from mbviz.runner import RunConfig, evaluate, train

from .tabular_data import FEATURES, TASKS, synthetic_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem() -> TabularProblem:
    return TabularProblem(
        synthetic_table(), TASKS, FEATURES, masks={"bought": "has_bought"}, hidden=(16, 8)
    )


def test_epochs_visit_every_training_row_once_per_epoch(problem, monkeypatch) -> None:
    seen: list[torch.Tensor] = []
    orig = problem.train_batch

    def spy(idx: torch.Tensor):
        seen.append(idx.clone())
        return orig(idx)

    monkeypatch.setattr(problem, "train_batch", spy)
    n = problem.train_size  # 280 rows: 5 batches of 64 per epoch, the last one of 24
    res = train(problem, rule="multibalance", epochs=3, batch_size=64, progress=False)
    assert n == 280 and len(seen) == 15
    assert res.history["step"].max() == 15 and res.last_step == 15
    for e in range(3):
        rows = torch.cat(seen[5 * e : 5 * e + 5])
        assert torch.equal(rows.sort().values, torch.arange(n))
    assert not torch.equal(torch.cat(seen[:5]), torch.cat(seen[5:10]))  # fresh order
    # eval_every=0 with epochs: one evaluation at the end of every epoch
    assert sorted(res.evals["step"].unique()) == [5, 10, 15]


def test_epochs_need_a_fixed_training_set() -> None:
    with pytest.raises(ValueError, match="epochs needs a problem with a fixed training set"):
        train(SyntheticProblem(), epochs=1, progress=False)


def test_early_stopping_restores_the_best_validation_weights_exactly(problem) -> None:
    cfg = RunConfig(
        rule="multibalance", steps=80, batch_size=32, lr=0.05, eval_every=4, progress=False
    )
    res = train(problem, cfg, monitor="y_small:rmse", patience=3)
    val = res.evals[(res.evals["split"] == "val") & (res.evals["task"] == "y_small")]
    rmse = val.set_index("step")["value"]
    best = int(rmse.idxmin())
    assert res.best_step == best
    # patience 3: stopped three evaluations after the best (or ran to the end)
    assert res.last_step == min(best + 3 * 4, 80)
    assert rmse.index.max() == res.last_step
    # the restored model is the one a run of exactly best_step steps ends with
    ref = train(problem, cfg, steps=best)
    for (k, a), (_, b) in zip(res.model.state_dict().items(), ref.model.state_dict().items()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k
    assert evaluate(res.model, problem, "val")["y_small"]["rmse"] == pytest.approx(
        float(rmse[best]), rel=1e-6
    )


def test_mean_monitor_and_bad_monitors(problem) -> None:
    res = train(problem, steps=12, batch_size=32, eval_every=4, monitor="mean", progress=False)
    assert res.best_step in (4, 8, 12)
    with pytest.raises(ValueError, match="monitor must be 'mean'.*'y_small'"):
        train(problem, steps=4, eval_every=2, monitor="nope", progress=False)
    with pytest.raises(ValueError, match="must be one of \\('rmse',\\)"):
        train(problem, steps=4, eval_every=2, monitor="y_small:auc", progress=False)
    with pytest.raises(ValueError, match="set eval_every > 0 or train by epochs"):
        train(problem, steps=4, monitor="mean", progress=False)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train(problem, epochs=0, progress=False)
    with pytest.raises(ValueError, match="patience must be an integer >= 0"):
        train(problem, steps=4, eval_every=2, monitor="mean", patience=-1, progress=False)


def test_compare_on_a_table_and_the_scale_imbalance(problem) -> None:
    """y_big's MSE is ~10^6 times y_small's: under equal weights (and under MultiBalance
    with relax 0.7, whose 1 - relax part keeps the raw scale) y_small learns nothing;
    with relax 1 every task learns."""
    cmp = compare(
        problem,
        rules=("equal", "multibalance"),
        seeds=(0,),
        epochs=6,
        batch_size=32,
        progress=False,
        rule_kwargs={"multibalance": {"relax": 1.0}},
    )
    table = cmp.table().set_index("rule")
    assert list(table.index) == ["Equal", "MultiBalance", "single-task"]
    df = synthetic_table()
    small_sd = np.nanstd(df["y_small"].to_numpy()[problem.rows["test"]])
    assert table.loc["Equal", "y_small rmse"] > 0.9 * small_sd
    assert table.loc["MultiBalance", "y_small rmse"] < 0.5 * small_sd
    assert table.loc["MultiBalance", "clicked auc"] > 0.9 > table.loc["Equal", "clicked auc"]
    assert table.loc["MultiBalance", "delta_m"] > table.loc["Equal", "delta_m"] + 20


def test_mean_monitor_leaves_out_tasks_without_a_baseline(problem) -> None:
    from mbviz.runner import monitor_score

    first = {
        "y_small": {"rmse": 2.0},
        "y_big": {"rmse": 100.0},
        "clicked": {"auc": float("nan")},  # one class in the split
        "bought": {"auc": 0.5},
    }
    now = {"y_small": {"rmse": 1.0}, "y_big": {"rmse": 100.0}, "clicked": {"auc": 0.9}}
    now["bought"] = {"auc": 0.6}
    # mean of +50% (y_small), 0% (y_big), +20% (bought); clicked left out
    assert monitor_score("mean", problem, now, first) == pytest.approx(70.0 / 3)
    assert monitor_score("y_small", problem, now, first) == -1.0  # lower RMSE scores higher
