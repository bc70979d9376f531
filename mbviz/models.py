"""Multi-task models with one tower per task and a balancer on the shared representation.

Three models, one interface (:class:`MultiTaskModel`): ``forward(*inputs)``
returns one prediction ``[B]`` per task (a logit for binary tasks, a value for
regression); :meth:`~MultiTaskModel.attach` installs a balancing rule where the
model's shared representation is; :meth:`~MultiTaskModel.shared_parameters`
lists what all tasks share (for parameter-level balancing).

- :class:`DenseSharedBottom`: dense input -> shared MLP -> ``z`` -> towers (synthetic problems).
- :class:`SharedBottom`: user and item embeddings (+ item features) -> shared MLP -> ``z``
  -> towers. The balancer forks ``z`` (:class:`mbkernels.Balancer`).
- :class:`MMoE` (Ma et al., KDD 2018): ``K`` shared experts, one softmax gate per task,
  tower ``t`` reads its gated mixture ``h_t = sum_k gate_t,k * e_k``.

Where the balancer sits in MMoE. There is no single tensor that feeds every tower: each
tower reads its own mixture. Two honest choices, both one backward pass:

- ``balance_on="mixture"`` (default, as LibMTL does): weights from the Gram matrix of the
  gradients ``dL_t/dh_t`` on each task's own mixture, each gradient scaled by its weight
  (:class:`mbviz.taskwise.TaskwiseBalancer`). Cheapest ([B, D] per task) and comparable to
  LibMTL results; the cosines compare gradients of different tensors in the same feature
  space.
- ``balance_on="experts"``: fork the stacked expert outputs ``E [B, K, D]`` — the real
  shared representation — so each task's gradient ``dL_t/dE`` already carries its gate
  weights; the standard :class:`mbkernels.Balancer` applies unchanged. ``K`` times more
  elements per task.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mbkernels import Balancer
from mbkernels.rules import Rule
from mbkernels.validation import check_choice, check_int

from .taskwise import TaskwiseBalancer


def mlp(sizes: Sequence[int], *, last_activation: bool = True) -> nn.Sequential:
    """Linear layers with ReLU between them (and after the last if ``last_activation``)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _towers(rep_dim: int, num_tasks: int, hidden: int) -> nn.ModuleList:
    sizes = [rep_dim, hidden, 1] if hidden > 0 else [rep_dim, 1]
    return nn.ModuleList(mlp(sizes, last_activation=False) for _ in range(num_tasks))


class MultiTaskModel(nn.Module):
    """Base class: ``num_tasks`` towers and an optional balancer (``None`` = plain sum)."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)
        self.balancer: nn.Module | None = None

    def attach(self, rule: Rule | None, *, backend: str = "auto") -> nn.Module | None:
        """Install ``rule`` on the shared representation (``None``: no balancer)."""
        if rule is not None and rule.num_tasks != self.num_tasks:
            raise ValueError(
                f"rule.num_tasks must equal the model's num_tasks={self.num_tasks}, "
                f"got {rule.num_tasks}"
            )
        # full_gram: the course plots the conflicts (cosines) under every rule.
        self.balancer = None if rule is None else Balancer(rule, backend=backend, full_gram=True)
        return self.balancer

    def _split(self, z: Tensor) -> tuple[Tensor, ...]:
        if self.balancer is None:
            return tuple(z for _ in range(self.num_tasks))
        return tuple(self.balancer(z))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss depends on (for parameter-level balancing)."""
        raise NotImplementedError

    @property
    def stats(self):  # type: ignore[no-untyped-def]
        """The balancer's latest :class:`mbkernels.BalanceStats` (``None`` without one)."""
        return None if self.balancer is None else self.balancer.stats


class DenseSharedBottom(MultiTaskModel):
    """Dense features -> shared MLP (``hidden``, then ``rep_dim``) -> towers.

    With ``hidden=()`` and ``bias=False`` the bottom is a linear map ``z = W x``.
    """

    def __init__(
        self,
        in_dim: int,
        num_tasks: int,
        *,
        rep_dim: int = 8,
        hidden: Sequence[int] = (),
        tower_hidden: int = 0,
        linear: bool = False,
    ) -> None:
        super().__init__(num_tasks)
        sizes = [in_dim, *hidden, rep_dim]
        self.bottom = (
            nn.Linear(in_dim, rep_dim, bias=False) if linear else mlp(sizes, last_activation=True)
        )
        self.towers = _towers(rep_dim, num_tasks, tower_hidden)

    def representation(self, x: Tensor) -> Tensor:
        return self.bottom(x)

    def forward(self, x: Tensor) -> list[Tensor]:
        zs = self._split(self.representation(x))
        return [tower(z).squeeze(-1) for tower, z in zip(self.towers, zs)]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.bottom.parameters())


class _Embeddings(nn.Module):
    """User and item embeddings concatenated with dense item features."""

    def __init__(self, num_users: int, num_items: int, item_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.user = nn.Embedding(num_users, emb_dim)
        self.item = nn.Embedding(num_items, emb_dim)
        nn.init.normal_(self.user.weight, std=0.05)
        nn.init.normal_(self.item.weight, std=0.05)
        self.out_dim = 2 * emb_dim + item_dim

    def forward(self, users: Tensor, items: Tensor, item_feats: Tensor) -> Tensor:
        return torch.cat([self.user(users), self.item(items), item_feats], dim=-1)


class SharedBottom(MultiTaskModel):
    """Embeddings -> shared MLP -> ``z`` (the balanced representation) -> one tower per task."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_tasks: int,
        *,
        item_dim: int = 0,
        emb_dim: int = 16,
        hidden: Sequence[int] = (64, 32),
        tower_hidden: int = 16,
    ) -> None:
        super().__init__(num_tasks)
        self.embed = _Embeddings(num_users, num_items, item_dim, emb_dim)
        self.bottom = mlp([self.embed.out_dim, *hidden])
        self.towers = _towers(hidden[-1], num_tasks, tower_hidden)

    def forward(self, users: Tensor, items: Tensor, item_feats: Tensor) -> list[Tensor]:
        z = self.bottom(self.embed(users, items, item_feats))
        zs = self._split(z)
        return [tower(z_t).squeeze(-1) for tower, z_t in zip(self.towers, zs)]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.embed.parameters(), *self.bottom.parameters()]


class MMoE(MultiTaskModel):
    """Multi-gate mixture of experts; see the module docstring for ``balance_on``."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_tasks: int,
        *,
        item_dim: int = 0,
        emb_dim: int = 16,
        num_experts: int = 4,
        expert_hidden: Sequence[int] = (64, 32),
        tower_hidden: int = 16,
        balance_on: str = "mixture",
    ) -> None:
        super().__init__(num_tasks)
        self.balance_on = check_choice("balance_on", balance_on, ("mixture", "experts"))
        check_int("num_experts", num_experts, low=1)
        self.embed = _Embeddings(num_users, num_items, item_dim, emb_dim)
        self.experts = nn.ModuleList(
            mlp([self.embed.out_dim, *expert_hidden]) for _ in range(num_experts)
        )
        self.gates = nn.ModuleList(
            nn.Linear(self.embed.out_dim, num_experts) for _ in range(num_tasks)
        )
        self.towers = _towers(expert_hidden[-1], num_tasks, tower_hidden)

    def attach(self, rule: Rule | None, *, backend: str = "auto") -> nn.Module | None:
        if rule is not None and self.balance_on == "mixture":
            super().attach(rule, backend=backend)  # validates num_tasks
            self.balancer = TaskwiseBalancer(rule, backend=backend)
            return self.balancer
        return super().attach(rule, backend=backend)

    def forward(self, users: Tensor, items: Tensor, item_feats: Tensor) -> list[Tensor]:
        x = self.embed(users, items, item_feats)
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # [B, K, D]
        gates = [torch.softmax(g(x), dim=-1) for g in self.gates]  # T x [B, K]
        if self.balance_on == "experts":
            es = self._split(experts)
            mixes = [torch.einsum("bk,bkd->bd", g, e) for g, e in zip(gates, es)]
        else:
            mixes = [torch.einsum("bk,bkd->bd", g, experts) for g in gates]
            if self.balancer is not None:
                mixes = list(self.balancer(*mixes))
        return [tower(h).squeeze(-1) for tower, h in zip(self.towers, mixes)]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.embed.parameters(), *self.experts.parameters()]


class TabularSharedBottom(MultiTaskModel):
    """Dense features and categorical embeddings -> shared MLP -> ``z`` -> towers.

    Inputs: ``dense [B, num_dense]`` (float) and ``codes [B, len(cardinalities)]``
    (long, 0 = missing or unseen). Tower ``t`` predicts on a standard scale; the output is
    ``out_shift[t] + out_scale[t] * tower_t(z_t)``, so a regression task's prediction comes
    out in its own units (shift and scale are its training mean and standard deviation)
    while every tower starts at the same scale. Binary tasks keep shift 0 and scale 1
    (a logit); count tasks predict a log rate (shift: the log of the mean count).
    """

    def __init__(
        self,
        num_dense: int,
        cardinalities: Sequence[int],
        num_tasks: int,
        *,
        emb_dim: int = 8,
        hidden: Sequence[int] = (64, 32),
        tower_hidden: int = 16,
        out_shift: Sequence[float] | None = None,
        out_scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__(num_tasks)
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, emb_dim) for c in cardinalities)
        for e in self.embeddings:
            nn.init.normal_(e.weight, std=0.05)
        in_dim = num_dense + emb_dim * len(self.embeddings)
        if in_dim == 0:
            raise ValueError("TabularSharedBottom needs at least one feature, got none")
        self.bottom = mlp([in_dim, *hidden])
        self.towers = _towers(hidden[-1], num_tasks, tower_hidden)
        shift = [0.0] * num_tasks if out_shift is None else list(out_shift)
        scale = [1.0] * num_tasks if out_scale is None else list(out_scale)
        self.register_buffer("out_shift", torch.tensor(shift, dtype=torch.float32))
        self.register_buffer("out_scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, dense: Tensor, codes: Tensor) -> list[Tensor]:
        parts = [dense, *(e(codes[:, i]) for i, e in enumerate(self.embeddings))]
        z = self.bottom(torch.cat(parts, dim=-1))
        zs = self._split(z)
        return [
            self.out_shift[t] + self.out_scale[t] * tower(z_t).squeeze(-1)
            for t, (tower, z_t) in enumerate(zip(self.towers, zs))
        ]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.embeddings.parameters(), *self.bottom.parameters()]
