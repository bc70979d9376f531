"""The cosine matrix of the task gradients from their Gram matrix, for the rules that
pseudo-invert it (IMTL-G, ConFIG): unit directions only, so no task's scale enters."""

from __future__ import annotations

import torch
from torch import Tensor


def unit_cosine(gram: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(g, present, safe, cosine)``: the Gram matrix in float64, symmetrised; which tasks
    have a non-zero gradient; the norms with 1 in place of 0; and ``C = D^-1 G D^-1``
    (``D = diag(norms)``) with zero rows and columns for zero-norm tasks. Not clipped to
    ``[-1, 1]``: a pseudo-inverse sees the exact ratios."""
    g = gram.to(torch.float64)
    g = 0.5 * (g + g.T)
    norms = g.diagonal().clamp_min(0).sqrt()
    present = norms > 0
    safe = torch.where(present, norms, torch.ones_like(norms))
    both = present[:, None] & present[None, :]
    cosine = torch.where(both, g / (safe[:, None] * safe[None, :]), torch.zeros_like(g))
    return g, present, safe, cosine
