"""Parameter-level balancing: one backward pass per task over the shared parameters.

This is the classic way gradient-balancing methods work, and what MultiBalance avoids:
each task's loss is back-propagated on its own (``T`` backward passes through the
shared bottom instead of one), the per-task gradients of every shared parameter are
kept, and a method combines them into the ``.grad`` the optimizer sees. The task
towers get their own task's gradient as usual, from the same passes.

It is here as a baseline, for teaching and for the cost comparison
(``python -m benchmarks``), with the same call shape as far as it goes::

    bal = MetaBalanceParams(model.bottom.parameters(), num_tasks=3)
    losses = [loss_fn_t(tower_t(model.bottom(x)), y_t) for ...]
    bal.backward(losses)          # instead of sum(losses).backward()
    opt.step()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..validation import check_int


@dataclass(frozen=True)
class ParamBalanceStats:
    """What a parameter-level balancer saw on its latest step (detached tensors).

    Attributes:
        gram: ``[T, T]`` Gram matrix of the per-task gradients of all shared parameters
            (flattened and concatenated), float64.
        norms: ``[T]`` norms of those gradients.
        weights: ``[P, T]`` weight of task t on shared parameter tensor p.
        state: the method's state after the step (MetaBalance: ``{"ema": [P, T]}``).
        step: number of steps taken (0-d int64).
    """

    gram: Tensor
    norms: Tensor
    weights: Tensor
    state: dict[str, Tensor]
    step: Tensor

    @property
    def cosine(self) -> Tensor:
        from ..stats import cosine_from_gram

        return cosine_from_gram(self.gram)


class ParamBalancer(ABC):
    """Base class: collects per-task gradients of the shared parameters and writes their
    combination to ``.grad``.

    Args:
        shared_params: the parameters every task depends on (the shared bottom).
        num_tasks: number of task losses passed to :meth:`backward`.
    """

    #: Short identifier, used in saved state.
    name = "param_balancer"

    def __init__(self, shared_params: Iterable[Tensor], num_tasks: int) -> None:
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)
        params = list(shared_params)
        if not params:
            raise ValueError("shared_params must contain at least one tensor, got none")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                raise ValueError(
                    f"shared_params[{i}] must be a leaf tensor with requires_grad=True"
                )
        if len({id(p) for p in params}) != len(params):
            raise ValueError("shared_params must not contain the same tensor twice")
        self.params: list[Tensor] = params
        self.step = torch.zeros((), dtype=torch.int64)
        self._stats: ParamBalanceStats | None = None

    # ------------------------------------------------------------------ gradients
    def task_gradients(self, losses: Sequence[Tensor]) -> list[list[Tensor]]:
        """``grads[t][p]``: gradient of ``losses[t]`` w.r.t. shared parameter ``p``.

        Runs one ``loss.backward()`` per task (so task towers accumulate their own
        gradients as usual) and leaves the shared parameters' ``.grad`` as it found it.
        """
        self._check_losses(losses)
        saved = [p.grad for p in self.params]
        grads: list[list[Tensor]] = []
        try:
            for p in self.params:
                p.grad = None
            for t, loss in enumerate(losses):
                loss.backward(retain_graph=t < len(losses) - 1)
                grads.append(
                    [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
                )
                for p in self.params:
                    p.grad = None
        finally:
            for p, g in zip(self.params, saved):
                p.grad = g
        return grads

    def backward(self, losses: Sequence[Tensor]) -> None:
        """Back-propagate every task's loss; shared parameters receive the combination
        (added to any ``.grad`` they already hold), towers their own gradients."""
        grads = self.task_gradients(losses)
        flat = torch.stack(
            [torch.cat([g.detach().reshape(-1).double() for g in task]) for task in grads]
        )
        gram = flat @ flat.T
        combined, weights, state = self.combine(grads, gram)
        for p, c in zip(self.params, combined):
            p.grad = c if p.grad is None else p.grad + c
        self.step += 1
        self._stats = ParamBalanceStats(
            gram=gram,
            norms=gram.diagonal().clamp_min(0).sqrt(),
            weights=weights.detach().clone(),
            state={k: v.detach().clone() for k, v in state.items()},
            step=self.step.clone(),
        )

    @abstractmethod
    def combine(
        self, grads: list[list[Tensor]], gram: Tensor
    ) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
        """Return (combined gradient per shared parameter, ``[P, T]`` weights, state),
        committing the method's new state."""

    # ---------------------------------------------------------------------- state
    @property
    def stats(self) -> ParamBalanceStats | None:
        """Statistics of the latest :meth:`backward` (``None`` before the first)."""
        return self._stats

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "num_params": len(self.params)}

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config(), "step": self.step.clone()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state saved by :meth:`state_dict`; raises ``ValueError`` and changes
        nothing if it does not fit (other method, ``num_tasks`` or parameters)."""
        self._check_state(state_dict)
        self.step = state_dict["step"].clone().to(torch.int64)

    def _check_state(self, state_dict: Mapping[str, Any]) -> None:
        if not isinstance(state_dict, Mapping) or "step" not in state_dict:
            raise ValueError("state_dict must be a mapping saved by state_dict()")
        if state_dict.get("name") != self.name:
            raise ValueError(
                f"state_dict was saved by {state_dict.get('name')!r}, this is {self.name!r}"
            )
        cfg = state_dict.get("config", {})
        for key in ("num_tasks", "num_params"):
            if cfg.get(key) != self.config()[key]:
                raise ValueError(
                    f"state_dict was saved for {key}={cfg.get(key)}, but this balancer has "
                    f"{key}={self.config()[key]}; they must match to load it"
                )
        step = state_dict["step"]
        if not isinstance(step, Tensor) or step.shape != () or int(step) < 0:
            raise ValueError("state_dict['step'] must be a 0-d tensor >= 0")

    def _check_losses(self, losses: Sequence[Tensor]) -> None:
        if isinstance(losses, Tensor) or len(losses) != self.num_tasks:
            got = "a tensor" if isinstance(losses, Tensor) else f"{len(losses)}"
            raise ValueError(
                f"losses must be a sequence of num_tasks={self.num_tasks} scalar tensors, got {got}"
            )
        for t, loss in enumerate(losses):
            if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.requires_grad:
                raise ValueError(f"losses[{t}] must be a scalar tensor that requires grad")
