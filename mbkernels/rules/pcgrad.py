"""PCGrad ("gradient surgery") expressed on the Gram matrix.

Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020. For every task i,
starting from ``g_i^PC = g_i`` and visiting the other tasks j in a random order::

    if <g_i^PC, g_j> < 0:   g_i^PC <- g_i^PC - <g_i^PC, g_j> / ||g_j||^2 * g_j

and the update is ``sum_i g_i^PC``. Every projected vector stays a linear combination
of the original ``g_t``, so the rule tracks its coefficients ``C`` (``g_i^PC = sum_k
C_ik g_k``) and needs only inner products: ``<g_i^PC, g_j> = (C G)_ij``. The weights are
the column sums of ``C``. The ``T - 1`` projection rounds run for all tasks at once.

The random order is a pure function of ``(seed, step)`` (:func:`pcgrad_orders`), computed
on the device by an integer hash: reproducible, resumable from a ``state_dict`` without
storing a generator, and free of host synchronisation. A task with a zero gradient is
never projected onto.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_int
from .base import Rule, State

_MOD = 2_147_483_647  # 2^31 - 1: products with the multipliers below stay inside int64


def _mix(x: Tensor) -> Tensor:
    for mult, add in ((48_271, 11), (69_621, 7_919), (16_807, 104_729)):
        x = (x * mult + add) % _MOD
        x = x ^ (x >> 13)
    return x


def pcgrad_orders(seed: int, step: Tensor | int, num_tasks: int, device=None) -> Tensor:
    """``[T, T-1]`` int64: row i lists the other tasks in the order task i visits them."""
    step_t = torch.as_tensor(step, dtype=torch.int64, device=device)
    base = _mix((step_t * 1_000_003 + seed * 7_919) % _MOD)
    idx = torch.arange(num_tasks * num_tasks, dtype=torch.int64, device=step_t.device)
    keys = _mix((base + idx * 2_654_435) % _MOD).reshape(num_tasks, num_tasks)
    keys = keys.masked_fill(torch.eye(num_tasks, dtype=torch.bool, device=keys.device), _MOD)
    return torch.argsort(keys, dim=1, stable=True)[:, : num_tasks - 1]


class PCGrad(Rule):
    """Projecting conflicting gradients, on the Gram matrix (see module docstring).

    Args:
        num_tasks: number of tasks.
        seed: integer >= 0 that, with the step number, fixes the visiting order.
    """

    name = "pcgrad"

    def __init__(self, num_tasks: int, *, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.seed = check_int("seed", seed, low=0)

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        t = self.num_tasks
        g = gram.to(torch.float64)
        coef = torch.eye(t, dtype=g.dtype, device=g.device)
        if t > 1:
            orders = pcgrad_orders(self.seed, step, t, device=g.device)
            sq = g.diagonal()
            for k in range(t - 1):
                j = orders[:, k]
                # <g_i^PC, g_j(i)> = sum_k C_ik G_k,j(i); elementwise, no tiny BLAS call
                dots = (coef * g[:, j].T).sum(-1)
                sq_j = sq[j]
                safe = torch.where(sq_j > 0, sq_j, torch.ones_like(sq_j))
                conflict = (dots < 0) & (sq_j > 0)
                step_size = torch.where(conflict, dots / safe, torch.zeros_like(dots))
                coef = coef - step_size[:, None] * torch.nn.functional.one_hot(j, t).to(g.dtype)
        return coef.sum(0).to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "seed": self.seed}
