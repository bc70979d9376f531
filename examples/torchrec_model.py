"""A multi-task DLRM in TorchRec with MultiBalance on the shared representation.

Sparse features arrive as a ``KeyedJaggedTensor`` and go through one
``EmbeddingBagCollection`` (sum pooling); dense features through a bottom MLP to the
embedding width; DLRM's pairwise dot-product interaction of all feature vectors feeds
a shared MLP whose output is ``Z`` ([B, D]). The balancer forks ``Z`` into one copy per
task tower, so one ``loss.backward()`` balances the tasks' gradients at ``Z``.

Under ``DistributedModelParallel`` the collection is replaced by a sharded one (tables
split across ranks, pooled embeddings exchanged by all-to-all) and everything else is
data-parallel (DDP); the balancer all-reduces its ``[T, T]`` Gram matrix over the default
group (``process_group="auto"``), so every rank applies the joint batch's weights.

Losses are joint-batch means (:func:`mbkernels.joint_mean_losses`): a task labelled on
only some rows (MovieLens' ``like`` and ``rating``) weighs every labelled row of the joint
batch the same, whichever rank holds it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor

import mbkernels as mbk
from mbkernels.validation import check_float, check_int


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model; ``table_rows[k]`` rows for sparse feature ``features[k]``."""

    features: tuple[str, ...]
    table_rows: tuple[int, ...]
    task_kinds: tuple[str, ...]  # "binary" (BCE) or "regression" (MSE) per task
    dense_features: int
    embed_dim: int = 16
    bottom: tuple[int, ...] = (32,)
    shared: tuple[int, ...] = (64, 32)
    tower: tuple[int, ...] = (16,)
    #: Embedding rows start as N(0, init_std²). TorchRec's default, U(±1/sqrt(rows)), makes
    #: the rows of large tables so small that their dot products, the interaction's only
    #: route to Z, carry almost no signal and the tables barely learn.
    init_std: float = 0.1

    def __post_init__(self) -> None:
        if len(self.features) == 0 or len(self.features) != len(self.table_rows):
            raise ValueError(
                "features and table_rows must be non-empty and of the same length, got "
                f"{len(self.features)} and {len(self.table_rows)}"
            )
        for rows in self.table_rows:
            check_int("table_rows", rows, low=1)
        check_int("num_tasks", len(self.task_kinds), low=1)
        bad = [k for k in self.task_kinds if k not in ("binary", "regression")]
        if bad:
            raise ValueError(f"task_kinds must be 'binary' or 'regression', got {bad}")
        check_int("dense_features", self.dense_features, low=1)
        check_int("embed_dim", self.embed_dim, low=1)
        check_float("init_std", self.init_std, low=0.0, high=10.0, low_open=True)

    @property
    def num_tasks(self) -> int:
        return len(self.task_kinds)


@dataclass
class Batch:
    """One batch: dense ``[B, F]``, sparse ids, labels and label mask ``[B, T]``."""

    dense: Tensor
    sparse: KeyedJaggedTensor
    labels: Tensor
    mask: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.dense.to(device),
            self.sparse.to(torch.device(device)),
            self.labels.to(device),
            self.mask.to(device),
        )

    def __len__(self) -> int:
        return int(self.dense.shape[0])


def _mlp(sizes: Sequence[int], last_relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def table_name(feature: str) -> str:
    """The embedding table of a sparse feature (the name sharding constraints use)."""
    return f"t_{feature}"


class MultiTaskDLRM(nn.Module):
    """EmbeddingBagCollection + bottom MLP -> dot interaction -> shared MLP (Z) ->
    MultiBalance fork -> one tower per task. ``forward`` returns the summed task losses
    (each a joint-batch mean) and the logits ``[B, T]``."""

    _pairs: Tensor

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        balancer: mbk.Balancer | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name=table_name(f),
                    embedding_dim=cfg.embed_dim,
                    num_embeddings=rows,
                    feature_names=[f],
                    init_fn=functools.partial(nn.init.normal_, std=cfg.init_std),
                )
                for f, rows in zip(cfg.features, cfg.table_rows)
            ],
            device=torch.device(device),
        )
        self.bottom = _mlp((cfg.dense_features, *cfg.bottom, cfg.embed_dim))
        f = len(cfg.features) + 1
        self.register_buffer("_pairs", torch.triu_indices(f, f, offset=1), persistent=False)
        self.shared = _mlp((f * (f - 1) // 2 + cfg.embed_dim, *cfg.shared))
        #: ``None``: the plain sum of the task losses (the baseline MultiBalance is timed against).
        self.balancer = balancer
        self.towers = nn.ModuleList(
            _mlp((cfg.shared[-1], *cfg.tower, 1), last_relu=False) for _ in cfg.task_kinds
        )

    def representation(self, batch: Batch) -> Tensor:
        """The shared representation Z, [B, D]."""
        d = self.bottom(batch.dense)
        pooled = self.ebc(batch.sparse).to_dict()
        feats = torch.stack([d, *(pooled[f] for f in self.cfg.features)], dim=1)  # [B, F, E]
        dots = feats @ feats.transpose(1, 2)
        inter = dots[:, self._pairs[0], self._pairs[1]]
        return self.shared(torch.cat([d, inter], dim=1))

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        z = self.representation(batch)
        zs = self.balancer(z) if self.balancer is not None else (z,) * self.cfg.num_tasks
        logits = torch.cat([tower(zt) for tower, zt in zip(self.towers, zs)], dim=1)
        sums = []
        for t, kind in enumerate(self.cfg.task_kinds):
            y = batch.labels[:, t]
            if kind == "binary":
                per_row = nn.functional.binary_cross_entropy_with_logits(
                    logits[:, t], y, reduction="none"
                )
            else:
                per_row = (logits[:, t] - y).pow(2)
            sums.append(torch.where(batch.mask[:, t], per_row, 0.0).sum())
        losses = mbk.joint_mean_losses(sums, list(batch.mask.sum(0)))
        return torch.stack(losses).sum(), logits.detach()
