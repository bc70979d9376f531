"""Multi-task recommendation on MovieLens: engagement, like and rating from one model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mbkernels.validation import check_choice, check_float, check_int

from ..data.movielens import MovieLensTasks, Split, load_movielens
from ..models import MMoE, MultiTaskModel, SharedBottom
from .base import Batch, MultiTaskProblem


class MovieLensProblem(MultiTaskProblem):
    """The :mod:`mbviz.data.movielens` tasks with a shared-bottom or MMoE model.

    Args:
        data: a built dataset; ``None`` builds it with ``load_movielens(**data_kwargs)``.
        loss_scales: fixed multipliers of the three training losses. The rating loss (MSE
            on a 0.5–5 scale) is naturally larger than the two cross-entropies.
        emb_dim, hidden, tower_hidden, num_experts: model sizes.
    """

    archs = ("shared_bottom", "mmoe", "mmoe_experts")

    def __init__(
        self,
        data: MovieLensTasks | None = None,
        *,
        loss_scales: Sequence[float] | None = None,
        emb_dim: int = 16,
        hidden: Sequence[int] = (64, 32),
        tower_hidden: int = 16,
        num_experts: int = 4,
        **data_kwargs: object,
    ) -> None:
        self.data = data if data is not None else load_movielens(**data_kwargs)  # type: ignore[arg-type]
        self.task_names = self.data.task_names
        self.task_kinds = self.data.task_kinds
        scales = tuple(loss_scales) if loss_scales is not None else (1.0,) * len(self.task_names)
        if len(scales) != len(self.task_names):
            raise ValueError(
                f"loss_scales must have {len(self.task_names)} entries, got {len(scales)}"
            )
        self.loss_scales = tuple(
            check_float(f"loss_scales[{i}]", s, low=0.0, high=1e6) for i, s in enumerate(scales)
        )
        self.emb_dim = check_int("emb_dim", emb_dim, low=1)
        self.hidden = tuple(hidden)
        self.tower_hidden = check_int("tower_hidden", tower_hidden, low=0)
        self.num_experts = check_int("num_experts", num_experts, low=1)
        self._eval = {
            "val": self._batch(self.data.val),
            "test": self._batch(self.data.test),
            "train": self._batch(self.data.train),
        }

    def _batch(self, s: Split, idx: torch.Tensor | None = None) -> Batch:
        if idx is not None:
            users, items = s.users[idx], s.items[idx]
            targets, mask = s.targets[idx], s.mask[idx]
        else:
            users, items, targets, mask = s.users, s.items, s.targets, s.mask
        return Batch((users, items, self.data.item_features[items]), targets, mask)

    def make_model(self, arch: str = "shared_bottom") -> MultiTaskModel:
        """``"shared_bottom"``, ``"mmoe"`` (balanced on each task's mixture, as LibMTL) or
        ``"mmoe_experts"`` (balanced on the stacked expert outputs); see :mod:`mbviz.models`."""
        check_choice("arch", arch, self.archs)
        common = {
            "item_dim": int(self.data.item_features.shape[1]),
            "emb_dim": self.emb_dim,
            "tower_hidden": self.tower_hidden,
        }
        d = self.data
        if arch == "shared_bottom":
            return SharedBottom(
                d.num_users, d.num_items, self.num_tasks, hidden=self.hidden, **common
            )
        return MMoE(
            d.num_users,
            d.num_items,
            self.num_tasks,
            num_experts=self.num_experts,
            expert_hidden=self.hidden,
            balance_on="mixture" if arch == "mmoe" else "experts",
            **common,
        )

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        check_int("batch_size", batch_size, low=1)
        n = len(self.data.train)
        idx = torch.randint(0, n, (batch_size,), generator=generator)
        return self._batch(self.data.train, idx)

    @property
    def train_size(self) -> int:
        return len(self.data.train)

    def train_batch(self, idx: torch.Tensor) -> Batch:
        return self._batch(self.data.train, idx)

    def split(self, name: str) -> Batch:
        check_choice("split", name, ("train", "val", "test"))
        return self._eval[name]
