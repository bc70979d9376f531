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

from .._validation import check_int

State = dict[str, Tensor]


class Rule(ABC):
    """Base class of the Gram-matrix balancing rules."""

    #: Short identifier, used in reprs, stats and saved configs.
    name: ClassVar[str] = "rule"

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
            gram: ``[T, T]`` Gram matrix of the representation gradients.
            state: the rule's current state (not modified).
            step: 0-d int64 tensor, the 1-based index of this step.

        Returns:
            ``(weights [T], new_state)``; weights in ``gram``'s dtype.
        """

    def config(self) -> dict[str, Any]:
        """Hyperparameters, for reprs and saved checkpoints."""
        return {"num_tasks": self.num_tasks}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
