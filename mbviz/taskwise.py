"""Balancing when every task has its *own* representation tensor (MMoE, as in LibMTL).

In an MMoE model each task's tower reads its own gated mixture of the experts,
``h_t = sum_k gate_t,k(x) * e_k(x)``. LibMTL balances there: it takes the
gradient of each task's loss with respect to that task's mixture, ``g_t =
dL_t/dh_t`` (all ``[B, D]``, the same shape, the same feature space), computes
task weights from them, and sends ``w_t * g_t`` back into mixture ``t``.

:class:`TaskwiseBalancer` does the same in ONE backward pass with the public
pieces of :mod:`mbkernels`: :func:`mbkernels.fork.fork_each` returns the ``T``
mixtures unchanged and hands their ``T`` gradients over together, and
:meth:`mbkernels.Balancer.weigh_each` runs one balancing step on them (pass 1 with
its float64 range fallback, the rule, state, EMA, stats) and scales each by its
weight. Unlike the shared-representation fork, gradients are *not* summed: each
goes back to its own mixture (and from there to the shared experts, where
autograd sums them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mbkernels import Balancer
from mbkernels.fork import fork_each
from mbkernels.rules import Rule
from mbkernels.stats import BalanceStats


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
        return fork_each(reps, self.balancer.weigh_each)
