"""TabularProblem against answers known from a synthetic table: train-only statistics,
masks, splits, encodings, and errors that name the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mbviz.problems import TabularProblem

from .tabular_data import FEATURES, TASKS, synthetic_table


def _problem(df: pd.DataFrame | None = None, **kw) -> TabularProblem:
    df = synthetic_table() if df is None else df
    kw.setdefault("masks", {"bought": "has_bought"})
    return TabularProblem(df, TASKS, FEATURES, **kw)


def test_standardisation_uses_train_rows_only() -> None:
    df = synthetic_table()
    p = _problem(df, time_col="day")
    train = df.iloc[p.rows["train"]]
    x2 = train["x2"].to_numpy()
    mean, std = x2.mean(), x2.std()
    all_mean = df["x2"].mean()
    assert p.feature_stats["x2"] == pytest.approx((mean, std), rel=1e-12)
    assert abs(all_mean - mean) > 1e-6  # the whole table's mean differs
    col = p.dense_names.index("x2")
    for split in ("train", "val", "test"):
        expect = (df["x2"].to_numpy()[p.rows[split]] - mean) / std
        got = p.split(split).inputs[0][:, col].numpy()
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    # the regression tower's output scale: the train labels' mean and std (labelled rows)
    yb = train["y_big"].dropna().to_numpy()
    assert p.target_shift[1] == pytest.approx(yb.mean())
    assert p.target_scale[1] == pytest.approx(yb.std())


def test_missing_feature_gets_zero_and_an_indicator() -> None:
    df = synthetic_table()
    p = _problem(df)
    i, j = p.dense_names.index("x1"), p.dense_names.index("x1 missing")
    assert "x2 missing" not in p.dense_names  # only columns with missing values get one
    for split in ("train", "val"):
        miss = df["x1"].isna().to_numpy()[p.rows[split]]
        dense = p.split(split).inputs[0]
        assert miss.any()
        assert torch.equal(dense[:, j].bool(), torch.as_tensor(miss))
        assert (dense[torch.as_tensor(miss), i] == 0).all()


def test_masks_drop_exactly_the_missing_labels() -> None:
    df = synthetic_table()
    p = _problem(df)
    for split in ("train", "val", "test"):
        rows = df.iloc[p.rows[split]]
        b = p.split(split)
        assert torch.equal(b.mask[:, 0], torch.ones(len(rows), dtype=torch.bool))
        assert torch.equal(b.mask[:, 1], torch.as_tensor(rows["y_big"].notna().to_numpy().copy()))
        assert torch.equal(b.mask[:, 3], torch.as_tensor(rows["has_bought"].to_numpy().copy()))
    # the loss of a masked task is the mean over its labelled rows only
    b = p.split("train")
    outs = [torch.zeros(len(b)) for _ in range(4)]
    losses = p.task_losses(outs, b)
    labelled = df.iloc[p.rows["train"]]["y_big"].dropna().to_numpy()
    assert float(losses[1]) == pytest.approx(float(np.mean(labelled**2)), rel=1e-5)
    # masked entries hold a finite placeholder (NaN would poison the masked sum)
    assert not torch.isnan(b.targets).any()


def test_time_split_puts_every_train_row_before_every_val_row() -> None:
    df = synthetic_table()
    p = _problem(df, time_col="day", val_frac=0.2, test_frac=0.2)
    day = df["day"].to_numpy()
    tr, va, te = (day[p.rows[s]] for s in ("train", "val", "test"))
    assert tr.max() < va.min() and va.max() < te.min()
    assert len(tr) + len(va) + len(te) == len(df)
    assert abs(len(va) - 80) <= 4 and abs(len(te) - 80) <= 4  # four rows per day
    with pytest.raises(ValueError, match="'day'.*too few distinct"):
        _problem(df.assign(day=df["day"] % 2), time_col="day")


def test_random_split_is_a_seeded_partition() -> None:
    p0, p0b, p1 = _problem(seed=0), _problem(seed=0), _problem(seed=1)
    allrows = np.sort(np.concatenate(list(p0.rows.values())))
    assert np.array_equal(allrows, np.arange(400))
    assert all(np.array_equal(p0.rows[s], p0b.rows[s]) for s in p0.rows)
    assert not np.array_equal(p0.rows["val"], p1.rows["val"])
    assert (len(p0.rows["val"]), len(p0.rows["test"])) == (60, 60)


def test_categorical_embedding_and_onehot() -> None:
    df = synthetic_table()
    p = _problem(df)
    assert p.categories["colour"] == ["blue", "green", "red"]
    assert p.cardinalities == [3]
    codes = p.split("train").inputs[1][:, 0].numpy()
    expect = df.iloc[p.rows["train"]]["colour"].map({"blue": 1, "green": 2, "red": 3})
    assert np.array_equal(codes, expect.to_numpy())
    # a category unseen in training (and a missing one) codes 0 / one-hot all zeros
    df2 = df.copy()
    p_rows = _problem(df2, time_col="day").rows
    df2.loc[p_rows["test"][:3], "colour"] = "purple"
    df2.loc[p_rows["test"][3:5], "colour"] = None
    pe = _problem(df2, time_col="day")
    assert (pe.split("test").inputs[1][:5, 0] == 0).all()
    po = _problem(df2, time_col="day", categorical_encoding="onehot")
    names = [n for n in po.dense_names if n.startswith("colour=")]
    assert names == ["colour=blue", "colour=green", "colour=red"]
    cols = [po.dense_names.index(n) for n in names]
    onehot = po.split("test").inputs[0][:, cols]
    assert (onehot[:5] == 0).all() and (onehot[5:].sum(1) == 1).all()
    assert po.cardinalities == [] and po.split("test").inputs[1].shape[1] == 0


def test_model_outputs_in_task_units() -> None:
    p = _problem()
    torch.manual_seed(0)
    model = p.make_model()
    for tower in model.towers:  # zero towers: every output is its shift
        for prm in tower.parameters():
            torch.nn.init.zeros_(prm)
    outs = model(*p.split("val").inputs)
    assert torch.allclose(outs[1], torch.full_like(outs[1], p.target_shift[1]))
    assert torch.equal(outs[2], torch.zeros_like(outs[2]))


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (None, {"tasks": {"nope": "regression"}}, "task column 'nope' is not in the table"),
        (None, {"features": ["x1", "ghost"]}, "feature column 'ghost' is not in the table"),
        (
            lambda d: d.assign(y_small=d["y_small"].astype(str)),
            {},
            "task 'y_small' \\(regression\\) must be numeric",
        ),
        (
            lambda d: d.assign(clicked=d["clicked"] * 2),
            {},
            "binary task 'clicked' must hold only 0 and 1.*\\[2.0\\]",
        ),
        (lambda d: d.assign(y_big=np.nan), {}, "task 'y_big' .*no labels"),
        (lambda d: d.assign(x2=7.0), {}, "feature 'x2' is constant"),
        (lambda d: d.assign(colour="red"), {}, "feature 'colour' is constant"),
        (None, {"tasks": {"y_small": "multiclass"}}, "task 'y_small': kind must be one of"),
        (None, {"tasks": {"y_small": "count"}}, "count task 'y_small' must hold non-negative"),
        (None, {"categorical_encoding": "hash"}, "categorical_encoding must be one of"),
        (None, {"masks": {"zzz": "has_bought"}}, "masks names 'zzz'"),
        (None, {"features": ["x1", "y_small"]}, "'y_small' is both a feature and a task"),
        (None, {"seed": -1}, "seed must be an integer >= 0"),
        (None, {"val_frac": 0.6, "test_frac": 0.5}, "val_frac \\+ test_frac must be below 1"),
        (None, {"split": "kfold"}, "split must be one of"),
    ],
)
def test_bad_spec_names_the_column(change, kwargs, message) -> None:
    df = synthetic_table()
    if change is not None:
        df = change(df)
    tasks = kwargs.pop("tasks", TASKS)
    features = kwargs.pop("features", FEATURES)
    kwargs.setdefault("masks", {"bought": "has_bought"} if "bought" in tasks else {})
    with pytest.raises(ValueError, match=message):
        TabularProblem(df, tasks, features, **kwargs)


def test_constant_but_sometimes_missing_feature_keeps_its_indicator() -> None:
    df = synthetic_table()
    df["flag"] = np.where(df.index % 3 == 0, 1.0, np.nan)  # 1 or missing
    p = TabularProblem(df, {"y_small": "regression"}, ["x2", "flag"])
    assert "flag" not in p.dense_names and "flag missing" in p.dense_names
    col = p.dense_names.index("flag missing")
    rows = p.rows["train"]
    assert np.array_equal(p.split("train").inputs[0][:, col].numpy(), df["flag"].isna()[rows])


def test_default_features_are_the_other_columns() -> None:
    df = synthetic_table()[["x1", "x2", "colour", "y_small", "clicked", "day"]]
    p = TabularProblem(df, {"y_small": "regression", "clicked": "binary"}, time_col="day")
    assert p.features == ["x1", "x2", "colour"]


def test_csv_round_trip_and_parquet_error(tmp_path) -> None:
    df = synthetic_table()
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    p = TabularProblem.from_csv(path, TASKS, features=FEATURES, masks={"bought": "has_bought"})
    q = _problem(df)
    assert torch.equal(p.split("val").targets, q.split("val").targets)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pyarrow"):
            TabularProblem.from_parquet(tmp_path / "t.parquet", TASKS)


def test_poisson_deviance_matches_the_log_likelihood_ratio() -> None:
    from scipy.stats import poisson  # the test extra installs scipy

    from mbviz.metrics import poisson_deviance

    y = np.array([0, 1, 3, 7, 2])
    mu = np.array([0.5, 1.0, 2.5, 9.0, 2.0])
    ref = 2 * np.mean(poisson.logpmf(y, np.maximum(y, 1e-300)) - poisson.logpmf(y, mu))
    assert poisson_deviance(y, mu) == pytest.approx(ref, rel=1e-10)
    assert poisson_deviance(y[1:], y[1:]) == 0.0


def test_count_task_learns_its_rate(one_thread) -> None:
    from mbviz.runner import train

    rng = np.random.default_rng(1)
    x = rng.standard_normal(600)
    df = pd.DataFrame({"x": x, "visits": rng.poisson(np.exp(1.0 + 0.8 * x)), "y": x})
    p = TabularProblem(df, {"visits": "count", "y": "regression"}, ["x"], hidden=(16,))
    assert p.target_shift[0] == pytest.approx(np.log(df["visits"].iloc[p.rows["train"]].mean()))
    res = train(p, rule="multibalance", epochs=15, batch_size=64, progress=False)
    test = df.iloc[p.rows["test"]]
    from mbviz.metrics import poisson_deviance

    mean_only = poisson_deviance(test["visits"], np.full(len(test), test["visits"].mean()))
    truth = poisson_deviance(test["visits"], np.exp(1.0 + 0.8 * test["x"]))
    got = res.test["visits"]["poisson_deviance"]
    assert got < 0.5 * mean_only and got < 1.2 * truth
