"""``MultiBalance``: a :class:`Balancer` running :class:`MultiBalanceRule`, in one call."""

from __future__ import annotations

from typing import Any

import torch

from .balancer import Balancer, GramReduce
from .rules.multibalance import MultiBalanceRule, Reference


class MultiBalance(Balancer):
    """Balance task gradients on the shared representation by EMA magnitudes.

    ``MultiBalance(num_tasks, beta, relax, reference, target)`` is
    ``Balancer(MultiBalanceRule(...))``. See :mod:`mbkernels.rules.multibalance`
    for the rule and its parameters:

    Args:
        num_tasks: number of task towers, >= 1.
        beta: EMA decay in [0, 1); 0 uses the current batch only.
        relax: in [0, 1]; 0 is the plain sum of losses, 1 full rebalancing.
        reference: "target" (the task ``target``), "mean" or "max".
        target: index of the reference task for ``reference="target"``.
        eps: > 0, added to the EMA in the denominator.
        bias_correction: divide the EMA by ``1 - beta**step``.
        backend: "auto", "torch" or "triton".
        gram_reduce: custom global reduction of the Gram matrix.
        process_group: "auto", None/False or a ProcessGroup (see :class:`Balancer`).
        nonfinite: "skip_update", "skip_task" or "raise" (:mod:`mbkernels.nonfinite`).
        grad_scaler: the ``torch.amp.GradScaler`` in use (:mod:`mbkernels.amp`).
        range_check: float64 fallback for the Gram matrix (:mod:`mbkernels.numerics`).
        full_gram: also compute the inner products between tasks (the rule needs
            only the norms), so ``stats.cosine`` monitors conflicts; see :class:`Balancer`.
        warn_after_refused: warn once a streak of refused steps reaches this length
            (``None``: never); see :class:`Balancer`.
        fast_paths: allow the CPU host path and the GPU device path (default); ``False``
            always takes the general tensor path; see :class:`Balancer`.
    """

    def __init__(
        self,
        num_tasks: int,
        beta: float = 0.9,
        relax: float = 0.7,
        reference: Reference | str = "target",
        target: int = 0,
        *,
        eps: float = 1e-8,
        bias_correction: bool = True,
        backend: str = "auto",
        gram_reduce: GramReduce | None = None,
        process_group: Any = "auto",
        nonfinite: str = "skip_update",
        grad_scaler: torch.amp.GradScaler | None = None,
        range_check: bool = True,
        full_gram: bool = False,
        warn_after_refused: int | None = 20,
        fast_paths: bool = True,
    ) -> None:
        rule = MultiBalanceRule(
            num_tasks,
            beta=beta,
            relax=relax,
            reference=reference,
            target=target,
            eps=eps,
            bias_correction=bias_correction,
        )
        super().__init__(
            rule,
            backend=backend,
            gram_reduce=gram_reduce,
            process_group=process_group,
            nonfinite=nonfinite,
            grad_scaler=grad_scaler,
            range_check=range_check,
            full_gram=full_gram,
            warn_after_refused=warn_after_refused,
            fast_paths=fast_paths,
        )
