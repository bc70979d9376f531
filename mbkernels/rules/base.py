"""The interface every balancing rule implements.

A rule maps the ``[T, T]`` Gram matrix of the per-task gradients on the shared
representation (and its own state) to ``T`` task weights. It never sees the
gradients themselves: that is what lets one two-pass kernel serve every rule.

Rules are *pure*: ``weights`` returns new state instead of mutating the old
one, so the balancer can refuse a step (non-finite statistics, a bad
state_dict) without losing anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..validation import check_int

State = dict[str, Tensor]


class Rule(ABC):
    """Base class of the Gram-matrix balancing rules."""

    #: Short identifier, used in reprs, stats and saved configs.
    name: ClassVar[str] = "rule"

    #: Whether the weights depend on the off-diagonal of the Gram matrix (the inner
    #: products between different tasks' gradients). Rules that read only the norms
    #: set this to ``False``; the balancer then computes only the diagonal on CPU
    #: (``T`` instead of ``T(T+1)/2`` dot products) unless asked for the full matrix.
    #: ``tests/test_rules_properties.py`` checks the claim for every such rule.
    uses_cross_terms: ClassVar[bool] = True

    def __init__(self, num_tasks: int) -> None:
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)

    def init_state(self, device: torch.device | None = None) -> State:
        """Fresh state tensors (float32) for a new run. Stateless rules return ``{}``."""
        return {}

    @abstractmethod
    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        """Compute this step's weights.

        Args:
            gram: ``[T, T]`` Gram matrix of the representation gradients (with
                zeros off the diagonal when ``uses_cross_terms`` is ``False`` and
                only the norms were computed).
            state: the rule's current state (not modified).
            step: 0-d int64 tensor, the 1-based index of this step.

        Returns:
            ``(weights [T], new_state)``; weights in ``gram``'s dtype.
        """

    def weights_subset(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor
    ) -> tuple[Tensor, State]:
        """Weights when only the tasks with ``active[t]`` take part in this step.

        Used by ``nonfinite="skip_task"``: inactive tasks get weight 0 and keep their
        per-task state (state tensors whose first dimension is ``num_tasks``); the
        rule sees a Gram matrix whose inactive rows and columns are 0. Rules with a
        better notion of "absent" override this.
        """
        both = active[:, None] & active[None, :]
        masked = torch.where(both, gram, torch.zeros_like(gram))
        weights, new_state = self.weights(masked, state, step)
        held: State = {}
        for name, value in new_state.items():
            old = state[name]
            if value.dim() >= 1 and value.shape[0] == self.num_tasks:
                keep = active.reshape(-1, *([1] * (value.dim() - 1)))
                value = torch.where(keep, value, old.to(value.dtype))
            held[name] = value
        return torch.where(active, weights, torch.zeros_like(weights)), held

    def host_weights(
        self, sq_norms: list[float], state: Mapping[str, list[Any]], step: int
    ) -> tuple[list[float], dict[str, list[Any]]] | None:
        """Optional: :meth:`weights` on host numbers, for rules that read only the norms
        (``uses_cross_terms = False``). The balancer's CPU path (:mod:`mbkernels._host`)
        calls it with the ``T`` squared norms (the Gram diagonal, finite), each state
        tensor as a list (``tensor.tolist()``) and the 1-based step; it returns the
        weights and the new state as lists, the state rounded to its tensors' dtypes.

        An implementation must give bit for bit what :meth:`weights` gives in float64
        (same operations in the same order; where a tensor op rounds differently from
        Python's, run that op as a tensor). ``None`` (this default): no host
        implementation, the balancer calls :meth:`weights`.
        """
        return None

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:  # noqa: B027
        """Raise ``ValueError`` naming the entry (``prefix + name``) if a state about to be
        loaded is out of this rule's range. The balancer has already checked that each
        entry is a finite tensor of the right shape and kind of dtype; rules add ranges
        (an optional hook: stateless rules have nothing to add)."""

    def config(self) -> dict[str, Any]:
        """Hyperparameters, for reprs and saved checkpoints."""
        return {"num_tasks": self.num_tasks}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def check_magnitude_ema(state: Mapping[str, Tensor], prefix: str = "") -> None:
    """:meth:`Rule.check_state` of the rules that keep an EMA of gradient magnitudes and
    its per-task update counts (``"ema"``, ``"count"``): both must be ``>= 0``."""
    count = state["count"]
    if bool((count < 0).any()):
        raise ValueError(
            f"state_dict entry {prefix + 'count'!r} must be in [0, inf) (updates of "
            f"each task's EMA), got {count.tolist()}"
        )
    ema = state["ema"]
    if bool((ema < 0).any()):
        raise ValueError(
            f"state_dict entry {prefix + 'ema'!r} must be in [0, inf) (an EMA of "
            f"gradient norms), got {ema.tolist()}"
        )
