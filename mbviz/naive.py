"""The textbook composition of one MultiBalance step: the baseline the fused op is timed
against, in the course (notebook 06) and in the op benchmark (``python -m benchmarks op``).

It is what one writes without thinking about memory: ``torch.stack`` of the gradients,
per-task norms, the EMA, the weights, and a broadcast weighted sum.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The rule's settings: EMA factor, relaxation towards the target task, and the guard
#: against division by zero.
BETA, RELAX, EPS = 0.9, 0.7, 1e-8


def naive_step(grads: list[Tensor], ema: Tensor) -> tuple[Tensor, Tensor]:
    """Textbook composition of one MultiBalance step (target task 0, no bias correction).

    Returns the combined gradient and the new EMA. Moves about ``(4T + 1) * N``
    elements plus the broadcast temporary: stack (read T, write T), norms (read T),
    weighted sum (read T into a ``[T, N]`` product, reduce, write 1).
    """
    g = torch.stack(grads)
    norms = torch.linalg.vector_norm(g, dim=1, dtype=torch.promote_types(g.dtype, torch.float32))
    new_ema = BETA * ema + (1.0 - BETA) * norms
    w = RELAX * new_ema[0] / (new_ema + EPS) + (1.0 - RELAX)
    w = torch.where(new_ema > 0, w, torch.ones_like(w))
    out = (w.to(g.dtype)[:, None] * g).sum(0)
    return out, new_ema
