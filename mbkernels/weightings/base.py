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
weights, the new state and the gradients of its learned parameters (``nn.Parameter`` objects
of the balancer, for the user's optimiser) without changing anything; the balancer
commits them when the step is finite.
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
    grads: dict[str, Tensor]  # d objective / d parameter, for each learned parameter


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

    def init_parameters(self, device: torch.device | None = None) -> dict[str, Tensor]:
        """Initial values of the learned parameters (float64 ``[T]``), which the balancer
        registers as ``nn.Parameter`` objects; ``{}`` for weightings without any."""
        return {}

    @abstractmethod
    def loss_step(
        self,
        losses: Tensor,
        sq_norms: Tensor,
        params: Mapping[str, Tensor],
        state: Mapping[str, Tensor],
        step: Tensor,
    ) -> LossStep:
        """This step's weights, new state and parameter gradients.

        Args:
            losses: ``[T]`` float64, the observed losses (finite; ``> 0`` when
                ``positive_losses``).
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

    def check_losses(self, losses: Tensor) -> None:
        """Raise ``ValueError`` if ``losses`` (float64 ``[T]``, finite) are out of this
        weighting's domain (``positive_losses``: every loss ``> 0``)."""
        if self.positive_losses and bool((losses <= 0).any()):
            raise ValueError(
                f"losses must be > 0 for rule {self.name!r} (it divides by them or takes "
                f"their logarithm), got {losses.tolist()}"
            )

    def after_step(self, losses: Tensor, state: Mapping[str, Tensor]) -> State | None:
        """The state after the optimiser step, from the losses recomputed on the same
        batch (:meth:`Balancer.update <mbkernels.Balancer.update>`); ``None`` (this
        default): the weighting has no such update."""
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
