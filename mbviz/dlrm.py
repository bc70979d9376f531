"""A DLRM-style multi-task recommender for the throughput benchmark.

Sparse features go through ``EmbeddingBag`` tables (sum pooling, sparse
gradients as in production), dense features through a bottom MLP; DLRM's
pairwise dot-product interaction of all feature vectors feeds a shared top MLP
whose output is the shared representation ``Z`` ([B, D]); each of the T tasks has
its own small tower and a binary cross-entropy loss. Balancers sit on ``Z``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mbkernels.validation import check_int


@dataclass(frozen=True)
class DLRMConfig:
    """Sizes of the model (defaults: |Z| = batch x 256)."""

    num_tasks: int = 4
    num_tables: int = 8
    rows_per_table: int = 20_000
    embed_dim: int = 64
    bag_size: int = 4
    dense_features: int = 64
    bottom: tuple[int, ...] = (256,)
    shared: tuple[int, ...] = (512, 256)
    tower: tuple[int, ...] = (64,)

    def __post_init__(self) -> None:
        check_int("num_tasks", self.num_tasks, low=1)
        check_int("num_tables", self.num_tables, low=1)
        check_int("rows_per_table", self.rows_per_table, low=1)
        check_int("embed_dim", self.embed_dim, low=1)
        check_int("bag_size", self.bag_size, low=1)
        check_int("dense_features", self.dense_features, low=1)

    @property
    def rep_dim(self) -> int:
        """Width D of the shared representation Z."""
        return self.shared[-1]


def _mlp(sizes: Sequence[int], last_relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class Batch:
    dense: Tensor  # [B, dense_features]
    sparse: Tensor  # [num_tables, B, bag_size] int64
    labels: Tensor  # [B, num_tasks] in {0, 1}

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.dense.to(device), self.sparse.to(device), self.labels.to(device))


def make_batch(cfg: DLRMConfig, batch_size: int, *, seed: int = 0) -> Batch:
    """A random batch; task t's positive rate falls from 0.5 to 0.05 (imbalanced tasks)."""
    check_int("batch_size", batch_size, low=1)
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch_size, cfg.dense_features, generator=g)
    sparse = torch.randint(
        cfg.rows_per_table, (cfg.num_tables, batch_size, cfg.bag_size), generator=g
    )
    rates = torch.linspace(0.5, 0.05, cfg.num_tasks)
    labels = (torch.rand(batch_size, cfg.num_tasks, generator=g) < rates).float()
    return Batch(dense, sparse, labels)


class DLRM(nn.Module):
    """Embedding bags + bottom MLP -> dot interaction -> shared MLP (Z) -> T towers."""

    _pairs: Tensor

    def __init__(self, cfg: DLRMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(cfg.rows_per_table, cfg.embed_dim, mode="sum", sparse=True)
            for _ in range(cfg.num_tables)
        )
        self.bottom = _mlp((cfg.dense_features, *cfg.bottom, cfg.embed_dim))
        f = cfg.num_tables + 1
        self.register_buffer("_pairs", torch.triu_indices(f, f, offset=1), persistent=False)
        n_inter = f * (f - 1) // 2 + cfg.embed_dim
        self.shared = _mlp((n_inter, *cfg.shared))
        self.towers = nn.ModuleList(
            _mlp((cfg.rep_dim, *cfg.tower, 1), last_relu=False) for _ in range(cfg.num_tasks)
        )

    def representation(self, batch: Batch) -> Tensor:
        """The shared representation Z, [B, D]."""
        d = self.bottom(batch.dense)
        embs = [table(idx) for table, idx in zip(self.tables, batch.sparse)]
        feats = torch.stack([d, *embs], dim=1)  # [B, F, E]
        dots = feats @ feats.transpose(1, 2)  # [B, F, F]
        inter = dots[:, self._pairs[0], self._pairs[1]]
        return self.shared(torch.cat([d, inter], dim=1))

    def task_losses(self, zs: Sequence[Tensor], batch: Batch) -> list[Tensor]:
        """One binary cross-entropy per task; tower t reads ``zs[t]``."""
        return [
            nn.functional.binary_cross_entropy_with_logits(tower(z).squeeze(-1), batch.labels[:, t])
            for t, (tower, z) in enumerate(zip(self.towers, zs))
        ]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Dense parameters every task shares (bottom and shared MLPs; not the tables)."""
        return [*self.bottom.parameters(), *self.shared.parameters()]
