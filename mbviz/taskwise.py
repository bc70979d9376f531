"""Balancing when every task has its *own* representation tensor (MMoE, as in LibMTL).

In an MMoE model each task's tower reads its own gated mixture of the experts,
``h_t = sum_k gate_t,k(x) * e_k(x)``. LibMTL balances there: it takes the
gradient of each task's loss with respect to that task's mixture, ``g_t =
dL_t/dh_t`` (all ``[B, D]``, the same shape, the same feature space), computes
task weights from them, and sends ``w_t * g_t`` back into mixture ``t``.

:class:`TaskwiseBalancer` does the same in ONE backward pass: a custom autograd
function returns its ``T`` inputs unchanged; autograd calls its backward once
with all ``T`` gradients; the Gram matrix ``<g_i, g_j>`` goes through the very
same :meth:`mbkernels.Balancer.step_weights` (rule, state, EMA, stats), and each
gradient is scaled by its weight. Unlike :class:`mbkernels.Balancer`, gradients
are *not* summed: each goes back to its own mixture (and from there to the
shared experts, where autograd sums them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from mbkernels import Balancer, ops
from mbkernels.rules import Rule
from mbkernels.stats import BalanceStats

_Combine = Callable[[Sequence[Tensor | None]], tuple[Tensor | None, ...]]


class _Taskwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, combine: _Combine, *reps: Tensor) -> tuple[Tensor, ...]:
        ctx.combine = combine  # type: ignore[attr-defined]
        ctx.set_materialize_grads(False)
        return tuple(r.view_as(r) for r in reps)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        return (None, *ctx.combine(grads))


class TaskwiseBalancer(nn.Module):
    """Balance ``T`` per-task representations of one shape with any :class:`Rule`.

    ``forward(*reps)`` takes exactly ``num_tasks`` tensors of the same shape and
    returns them unchanged; in the backward pass tensor ``t`` receives
    ``w_t * dL_t/dreps[t]``. The rule, its state and :attr:`stats` are those of
    an inner :class:`mbkernels.Balancer` (``self.balancer``).
    """

    def __init__(self, rule: Rule, *, backend: str = "auto") -> None:
        super().__init__()
        self.balancer = Balancer(rule, backend=backend, full_gram=True)
        self.num_tasks = self.balancer.num_tasks
        self.rule = rule

    @property
    def stats(self) -> BalanceStats | None:
        return self.balancer.stats

    def reset(self) -> None:
        self.balancer.reset()

    def forward(self, *reps: Tensor) -> tuple[Tensor, ...]:
        if len(reps) != self.num_tasks:
            raise ValueError(
                f"TaskwiseBalancer expects num_tasks={self.num_tasks} tensors, got {len(reps)}"
            )
        shapes = {tuple(r.shape) for r in reps}
        if len(shapes) != 1:
            raise ValueError(f"all task representations must have one shape, got {sorted(shapes)}")
        if not (torch.is_grad_enabled() and any(r.requires_grad for r in reps)):
            return tuple(reps)
        return _Taskwise.apply(self._combine, *reps)

    def _combine(self, grads: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
        present = [i for i, g in enumerate(grads) if g is not None]
        if not present:
            return tuple(None for _ in grads)
        gs = [g for g in grads if g is not None]
        gram_p = ops.gram(gs, self.balancer.backend)
        gram = gram_p.new_zeros(self.num_tasks, self.num_tasks)
        idx = torch.tensor(present, device=gram.device)
        gram[idx[:, None], idx[None, :]] = gram_p
        weights = self.balancer.step_weights(gram)
        out: list[Tensor | None] = [None] * self.num_tasks
        for i, g in zip(present, gs):
            out[i] = g * weights[i].to(g.dtype)
        return tuple(out)
