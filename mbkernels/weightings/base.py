"""The interface of the loss-aware weightings: rules that read this step's task losses.

A :class:`LossWeighting` is a :class:`~mbkernels.rules.Rule` whose weights depend on the
losses ``L_t`` the user hands the balancer with :meth:`Balancer.observe
<mbkernels.Balancer.observe>` before ``backward``. Two families:

* *loss scalarisers* (UW, IMTL-L, DWA, GLS / geometric mean, STCH, FAMO, the log
  transform): the paper trains on a scalarised loss ``F(L_1, ..., L_T)``. Its gradient
  with respect to the shared representation is ``sum_t dF/dL_t g_t``, so the weight of
  task ``t`` is the chain-rule factor ``w_t = dF/dL_t`` at the observed losses, and the
  fork's pass 2 writes exactly ``dF/dZ``;
* *GradNorm*, which learns its weights from the losses and the gradient norms on the
  shared representation (the Gram diagonal).

Like every rule, a weighting is pure: :meth:`LossWeighting.loss_step` returns the
weights and the new state without changing anything; the balancer commits them when the
step is finite. Learned parameters (``nn.Parameter`` objects of the balancer, for the
user's optimiser) get their gradients from autograd: :meth:`LossWeighting.parameter_term`
is the part of ``F`` that depends on them, and :meth:`Balancer.observe
<mbkernels.Balancer.observe>` returns ``term - term.detach()`` (zero-valued) for the user
to add to the loss they back-propagate.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from ..rules.base import Rule, State


class LossStep(NamedTuple):
    """What one step of a :class:`LossWeighting` proposes."""

    weights: Tensor  # [T] float64: the factor of each task's representation gradient
    state: State  # the rule state after the step


class LossWeighting(Rule):
    """Base class of the weightings that read the task losses (see the module doc)."""

    name: ClassVar[str] = "loss_weighting"
    #: Read by :class:`~mbkernels.Balancer`: a step needs :meth:`Balancer.observe
    #: <mbkernels.Balancer.observe>` first.
    needs_losses: ClassVar[bool] = True
    #: Only GradNorm reads the Gram diagonal; none reads the off-diagonal.
    uses_cross_terms: ClassVar[bool] = False
    #: The losses must be ``> 0`` (the weighting takes their logarithm or divides by them).
    positive_losses: bool = False
    #: State entries computed from the losses alone (per task, first dimension ``T``).
    #: Under ``nonfinite="skip_task"`` a dropped task's loss was still finite and
    #: observed, so these are committed for every task; the other per-task entries
    #: (derived from the gradients or the weights) are held for a dropped task.
    loss_state: ClassVar[tuple[str, ...]] = ()

    def init_parameters(self, device: torch.device | None = None) -> dict[str, Tensor]:
        """Initial values of the learned parameters (float64 ``[T]``), which the balancer
        registers as ``nn.Parameter`` objects; ``{}`` for weightings without any."""
        return {}

    def parameter_term(self, losses: Tensor, params: Mapping[str, Tensor]) -> Tensor | None:
        """The terms of ``F`` that depend on the learned parameters, at ``losses`` (float64
        ``[T]``, constants) and ``params`` (the ``nn.Parameter`` objects): a 0-d tensor whose
        gradient with respect to ``params`` is ``dF/dparams``; ``None`` (this default) for
        weightings without learned parameters."""
        return None

    @abstractmethod
    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        """This step's weights and new state.

        Args:
            losses: ``[T]`` float64, the observed losses (finite, within
                :meth:`loss_bounds`).
            sq_norms: ``[T]`` float64, the squared norms of the task gradients on the
                shared representation (the Gram diagonal).
            params: the learned parameters' values (float64, detached).
            state: the rule's current state (not modified).
            step: 0-d int64, the 1-based index of this step.
        """

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        raise ValueError(
            f"rule {self.name!r} weighs the tasks by their losses: call "
            f"bal.observe(losses) with this step's {self.num_tasks} task losses before "
            f"backward (the Gram matrix alone does not determine its weights)"
        )

    def loss_bounds(self) -> tuple[tuple[float, ...], bool, str]:
        """The domain of the losses: ``(low, strict, why)``, every loss ``L_t > low[t]``
        (``strict``) or ``L_t >= low[t]``, and why (for the error message). The default:
        no bound, or ``> 0`` with ``positive_losses``."""
        low = 0.0 if self.positive_losses else -math.inf
        return (low,) * self.num_tasks, True, "it divides by them or takes their logarithm"

    def check_losses(self, losses: Sequence[float]) -> None:
        """Raise ``ValueError`` naming the task index(es) and the allowed range if
        ``losses`` (``T`` finite host floats) are out of this weighting's domain
        (:meth:`loss_bounds`)."""
        low, strict, why = self.loss_bounds()
        bad = [
            i
            for i, (value, bound) in enumerate(zip(losses, low))
            if (value <= bound if strict else value < bound)
        ]
        if bad:
            sign = ">" if strict else ">="
            if len(set(low)) == 1:
                allowed = f"{sign} {low[0]!r}"
            else:
                allowed = f"{sign} {list(low)!r} (per task)"
            raise ValueError(
                f"losses must be {allowed} for rule {self.name!r} ({why}); got "
                f"{list(losses)}, out of that range at task index(es) {bad}"
            )

    def after_step(self, losses: Tensor, state: Mapping[str, Tensor]) -> State | None:
        """The state after the optimiser step, from the losses recomputed on the same
        batch (:meth:`Balancer.update <mbkernels.Balancer.update>`); ``None`` (this
        default): the weighting has no such update."""
        return None

    def after_refused_step(self, state: Mapping[str, Tensor]) -> State | None:
        """The state when :meth:`Balancer.update <mbkernels.Balancer.update>` follows a
        refused balancing step (nothing to learn from); ``None`` (this default): as is."""
        return None

    def end_epoch(self, state: Mapping[str, Tensor]) -> State | None:
        """The state at the end of an epoch (:meth:`Balancer.end_epoch
        <mbkernels.Balancer.end_epoch>`); ``None`` (this default): nothing to do."""
        return None

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks}


def check_vector(
    name: str, value: Sequence[float] | Tensor | None, num_tasks: int, default: float
) -> tuple[float, ...]:
    """``num_tasks`` finite numbers as a tuple (``None``: ``default`` for each task)."""
    if value is None:
        return (default,) * num_tasks
    if isinstance(value, Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of {num_tasks} (num_tasks) finite numbers, got {value!r}"
        ) from None
    if len(numbers) != num_tasks or not all(map(math.isfinite, numbers)):
        raise ValueError(
            f"{name} must be {num_tasks} (num_tasks) finite numbers, got {list(numbers)}"
        )
    return numbers
