"""Mixed precision: make the balancing weights independent of a GradScaler's loss scale.

With ``torch.amp.GradScaler`` every task loss is multiplied by the loss scale
``S`` before ``backward``, so every task gradient on the shared representation
is ``S * g_t`` and the Gram matrix is ``S**2 * G``. MultiBalance's weights are
homogeneous of degree 0 in the norms *except* through ``eps`` (and its EMA
would store scaled magnitudes, so a change of ``S`` mid-training would jerk
the weights). The balancer therefore divides the Gram matrix by ``S**2``
(in float64) before the rule runs: the rule, its EMA and :attr:`stats` see the
unscaled gradients. With power-of-two scales (GradScaler's default growth and
backoff factors 2 and 0.5) the division is exact, so the weights are
bit-identical for every scale. Pass 2 applies the weights to the scaled
gradients, so the gradient that flows on stays scaled, as GradScaler expects.

An overflowing step (inf/NaN in a task gradient) is the scaler's business,
whatever the non-finite policy: the balancer treats it as ``"skip_update"``,
leaves the EMA, step count and weights untouched and lets the non-finite
gradient flow on, so the scaler skips the optimizer step and backs off. (Under
``"skip_task"`` the rest of the gradient would be finite, the scaler would never
back off, and the overflowing task would be dropped on every later step;
``"raise"`` would stop training at the first overflow, which a scaler expects.)
Steps refused in a row are counted and warned about (:mod:`mbkernels.nonfinite`).

The scale is read from the scaler's device tensor without synchronising
(``GradScaler._scale``, set by ``scaler.scale(loss)``); before the first
``scale`` call, or with a disabled scaler, no unscaling is done.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_grad_scaler(grad_scaler: object) -> torch.amp.GradScaler | None:
    """Return ``grad_scaler`` if it is ``None`` or a ``torch.amp.GradScaler``."""
    if grad_scaler is None or isinstance(grad_scaler, torch.amp.GradScaler):
        return grad_scaler
    raise ValueError(
        f"grad_scaler must be None or a torch.amp.GradScaler, got {type(grad_scaler).__name__}"
    )


def current_scale(grad_scaler: torch.amp.GradScaler | None) -> Tensor | None:
    """The loss scale the current backward was run with, as a device tensor (or ``None``)."""
    if grad_scaler is None or not grad_scaler.is_enabled():
        return None
    scale = getattr(grad_scaler, "_scale", None)
    return scale if isinstance(scale, Tensor) else None


def unscale_gram(gram: Tensor, scale: Tensor | None) -> Tensor:
    """``gram / scale**2`` in float64 (``gram`` unchanged when ``scale`` is ``None``)."""
    if scale is None:
        return gram
    s = scale.to(device=gram.device, dtype=torch.float64).reshape(())
    return gram.to(torch.float64) / (s * s)
