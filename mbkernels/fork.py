"""Forks whose T outputs' gradients meet in one backward call.

:func:`fork` turns one tensor into T identical outputs. Each task tower consumes
its own output. When ``sum(losses).backward()`` runs, autograd calls
:meth:`_Fork.backward` exactly once with all T gradients ``dL_t/dZ`` (``None``
for a tower that did not use its output), and the callback turns them into the
single gradient that flows on into the bottom. No extra backward pass, no
detach: the towers' backward runs once.

:func:`fork_each` does the same for T tensors that are already separate (one
representation per task, as the per-task expert mixtures of an MMoE model): it
returns them unchanged, and the callback maps their T gradients to T gradients,
one for each input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

Combine = Callable[[Sequence[Tensor | None]], Tensor | None]
CombineEach = Callable[[Sequence[Tensor | None]], Sequence[Tensor | None]]


def _once(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``backward`` under :func:`~torch.autograd.function.once_differentiable`: run without
    recording, and a second differentiation through it raises. The forks' backward
    applies it only when grad mode is on (a ``create_graph=True`` backward); in an ordinary
    backward grad mode is off already and the wrapper's ``no_grad`` context, about a tenth
    of the fork's fixed cost on a small model, is skipped."""
    return once_differentiable(backward)


class _Fork(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, combine: Combine, num_outputs: int, z: Tensor
    ) -> tuple[Tensor, ...]:
        ctx.combine = combine  # type: ignore[attr-defined]
        # Unused outputs give None instead of a freshly allocated zero tensor.
        ctx.set_materialize_grads(False)
        # Views, not copies: forking costs no memory in the forward pass.
        return tuple(z.view_as(z) for _ in range(num_outputs))

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[None, None, Tensor | None]:
        if torch.is_grad_enabled():  # create_graph=True: see _once
            return _once(_Fork._combine)(ctx, *grads)
        return _Fork._combine(ctx, *grads)

    @staticmethod
    def _combine(ctx: Any, *grads: Tensor | None) -> tuple[None, None, Tensor | None]:
        return None, None, ctx.combine(grads)


def fork(z: Tensor, num_outputs: int, combine: Combine) -> tuple[Tensor, ...]:
    """Return ``num_outputs`` tensors equal to ``z``; their gradients go to ``combine``.

    ``combine`` receives the sequence of the outputs' gradients (``None`` where an
    output was not used) and returns the gradient for ``z`` (or ``None``).
    """
    return _Fork.apply(combine, num_outputs, z)


class _ForkEach(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, combine: CombineEach, *tensors: Tensor) -> tuple[Tensor, ...]:
        ctx.combine = combine  # type: ignore[attr-defined]
        ctx.num_inputs = len(tensors)  # type: ignore[attr-defined]
        ctx.set_materialize_grads(False)
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: see _once
            return _once(_ForkEach._combine)(ctx, *grads)
        return _ForkEach._combine(ctx, *grads)

    @staticmethod
    def _combine(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        out = tuple(ctx.combine(grads))
        if len(out) != ctx.num_inputs:
            raise ValueError(
                f"fork_each's combine must return {ctx.num_inputs} gradients, got {len(out)}"
            )
        return (None, *out)


def fork_each(tensors: Sequence[Tensor], combine: CombineEach) -> tuple[Tensor, ...]:
    """Return ``tensors`` unchanged (views); their gradients go to ``combine`` together.

    ``combine`` receives the sequence of the outputs' gradients (``None`` where an
    output was not used) and returns one gradient (or ``None``) per input, in order.
    """
    return _ForkEach.apply(combine, *tensors)
