"""Multi-task data for :mod:`examples.torchrec_model`: a synthetic Criteo-like generator
and MovieLens (user, movie and genre ids as sparse features).

A :class:`JointBatch` holds the rows of one step of the whole job; rank ``r`` of ``R``
trains on rows ``[r * B, (r + 1) * B)`` (:meth:`JointBatch.rows`), and the single-process
reference on all of them, so both see exactly the same data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchrec import KeyedJaggedTensor

from mbkernels.validation import check_int

from .torchrec_model import Batch, ModelConfig


@dataclass(frozen=True)
class JointBatch:
    """Rows of one step. ``lengths[k]`` [N] ids per row of sparse feature ``k``,
    ``values[k]`` their ids concatenated row after row."""

    features: tuple[str, ...]
    dense: Tensor
    lengths: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    labels: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def rows(self, lo: int, hi: int) -> Batch:
        """Rows ``[lo, hi)`` as a model :class:`~examples.torchrec_model.Batch`."""
        if not 0 <= lo < hi <= len(self):
            raise ValueError(f"rows must satisfy 0 <= lo < hi <= {len(self)}, got {lo}, {hi}")
        lengths, values = [], []
        for ln, v in zip(self.lengths, self.values):
            offsets = torch.cat([ln.new_zeros(1), ln.cumsum(0)])
            lengths.append(ln[lo:hi])
            values.append(v[int(offsets[lo]) : int(offsets[hi])])
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=list(self.features),
            values=torch.cat(values),
            lengths=torch.cat(lengths).to(torch.int32),
        )
        return Batch(self.dense[lo:hi], kjt, self.labels[lo:hi], self.mask[lo:hi])


def synthetic_config(
    num_tasks: int = 4,
    num_sparse: int = 26,
    rows_per_table: int = 10_000,
    dense_features: int = 13,
    embed_dim: int = 16,
    **sizes: Any,
) -> ModelConfig:
    """A Criteo-like model: 13 dense and 26 sparse features, ``num_tasks`` binary tasks;
    ``sizes``: ``bottom``, ``shared``, ``tower`` MLP widths (:class:`ModelConfig`)."""
    check_int("num_sparse", num_sparse, low=1)
    return ModelConfig(
        features=tuple(f"c{k}" for k in range(num_sparse)),
        table_rows=(rows_per_table,) * num_sparse,
        task_kinds=("binary",) * num_tasks,
        dense_features=dense_features,
        embed_dim=embed_dim,
        **sizes,
    )


def synthetic_batches(
    cfg: ModelConfig, batch: int, steps: int, *, seed: int = 0, max_ids: int = 3
) -> Iterator[JointBatch]:
    """``steps`` joint batches of ``batch`` rows, Criteo-like: log-normal counts as dense
    features, Zipf-distributed ids (1..``max_ids`` per row and feature), labels from a
    fixed hidden logistic model whose positive rate falls from task to task (imbalanced
    tasks). Deterministic under ``seed``."""
    check_int("batch", batch, low=1)
    check_int("steps", steps, low=0)
    check_int("max_ids", max_ids, low=1)
    g = torch.Generator().manual_seed(seed)
    T, S = cfg.num_tasks, len(cfg.features)
    w_dense = torch.randn(cfg.dense_features, T, generator=g) / cfg.dense_features**0.5
    id_score = [torch.randn(rows, generator=g) for rows in cfg.table_rows]
    w_sparse = torch.randn(S, T, generator=g) / S**0.5
    bias = torch.linspace(0.0, -3.0, T)
    for _ in range(steps):
        dense = torch.log1p(torch.exp(torch.randn(batch, cfg.dense_features, generator=g)))
        lengths, values = [], []
        score = torch.zeros(batch, S)
        for k, rows in enumerate(cfg.table_rows):
            ln = torch.randint(1, max_ids + 1, (batch,), generator=g)
            u = torch.rand(int(ln.sum()), generator=g)
            ids = torch.clamp((rows**u - 1).long(), 0, rows - 1)  # Zipf-like: few hot ids
            row_of = torch.repeat_interleave(torch.arange(batch), ln)
            score[:, k].index_add_(0, row_of, id_score[k][ids])
            lengths.append(ln)
            values.append(ids)
        logit = (dense - 1.0) @ w_dense + score @ w_sparse + bias
        labels = (torch.rand(batch, T, generator=g) < torch.sigmoid(logit)).float()
        yield JointBatch(
            cfg.features,
            dense,
            tuple(lengths),
            tuple(values),
            labels,
            torch.ones(batch, T, dtype=torch.bool),
        )


MOVIELENS_FEATURES = ("user", "movie", "genre")


def movielens_config(embed_dim: int = 16, max_users: int | None = None) -> ModelConfig:
    """The MovieLens model: user, movie and genre ids; the release year as dense input;
    tasks engagement (binary), like (binary), rating (regression)."""
    data = _movielens(max_users)
    return ModelConfig(
        features=MOVIELENS_FEATURES,
        table_rows=(data.num_users, data.num_items, len(data.genres) + 1),
        task_kinds=data.task_kinds,
        dense_features=1,
        embed_dim=embed_dim,
    )


def movielens_batches(
    batch: int, steps: int, *, split: str = "train", seed: int = 0, max_users: int | None = None
) -> Iterator[JointBatch]:
    """``steps`` joint batches of ``batch`` rows of MovieLens' ``split``
    (:func:`mbviz.data.load_movielens`), drawn in a fixed shuffled order (``seed``),
    cycling through the split; ``steps=0`` with ``split`` other than ``"train"`` gives the
    whole split once, in order."""
    check_int("batch", batch, low=1)
    check_int("steps", steps, low=0)
    data = _movielens(max_users)
    s = data.splits()[split]
    genres = data.item_features[:, :-1] > 0  # [items, G] multi-hot
    year = data.item_features[:, -1:]
    n = len(s)
    if steps == 0:
        order = torch.arange(n)
        chunks = [order[i : i + batch] for i in range(0, n, batch)]
    else:
        g = torch.Generator().manual_seed(seed)
        order = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-steps * batch // n))])
        chunks = [order[i * batch : (i + 1) * batch] for i in range(steps)]
    for rows in chunks:
        items = s.items[rows]
        hot = genres[items]  # [B, G]; a movie without a genre gets the extra id G
        hot = torch.cat([hot, ~hot.any(1, keepdim=True)], dim=1)
        yield JointBatch(
            MOVIELENS_FEATURES,
            year[items],
            (torch.ones(len(rows), dtype=torch.long),) * 2 + (hot.sum(1),),
            (s.users[rows].long(), items.long(), torch.nonzero(hot)[:, 1]),
            s.targets[rows],
            s.mask[rows],
        )


def _movielens(max_users: int | None):  # -> mbviz.data.MovieLensTasks
    from mbviz.data import load_movielens

    return load_movielens(max_users=max_users)
