"""Any Gram rule of :mod:`mbkernels.rules` on the shared parameters.

The rule runs through a :class:`mbkernels.Balancer`'s :meth:`~mbkernels.Balancer.step_weights`
(its state, EMA, non-finite policy and :attr:`~mbkernels.Balancer.stats`), but on the
``[T, T]`` Gram matrix of the per-task gradients of all shared parameters instead of
the representation's: the parameter-level counterpart of the same rule, for comparing
the two levels. One backward per task. Every shared parameter receives
``sum_t w_t g_t`` with the same ``w``.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from ..balancer import Balancer
from .base import ParamBalancer


class RuleParams(ParamBalancer):
    """The rule of ``balancer`` at parameter level (see module docstring).

    Args:
        shared_params: the parameters every task depends on (the shared bottom).
        balancer: runs the rule; its ``num_tasks`` is this balancer's, its
            :attr:`~mbkernels.Balancer.stats` and ``state_dict`` hold the rule's view of
            each step (this object's :attr:`stats` the per-parameter weights).
    """

    name = "rule_params"

    def __init__(self, shared_params: Iterable[Tensor], balancer: Balancer) -> None:
        if not isinstance(balancer, Balancer):
            raise ValueError(
                f"balancer must be a mbkernels.Balancer, got {type(balancer).__name__}"
            )
        super().__init__(shared_params, balancer.num_tasks)
        self.balancer = balancer

    def combine(
        self, grads: list[list[Tensor]], gram: Tensor
    ) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
        w = self.balancer.step_weights(gram)
        combined = []
        for i, p in enumerate(self.params):
            acc = w[0].to(p.dtype) * grads[0][i]
            for t in range(1, self.num_tasks):
                acc = acc + w[t].to(p.dtype) * grads[t][i]
            combined.append(acc)
        stats = self.balancer.stats
        state = {} if stats is None else dict(stats.state)
        return combined, w.expand(len(self.params), -1), state
