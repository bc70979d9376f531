"""Aligned-MTL: combine the task gradients after aligning them to an orthogonal system.

Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023.
With the task gradients as the rows of ``M = U S V^T`` (``T x D``), the aligned gradients
are ``sigma_min * U V^T`` (all singular values set to the smallest one, so the linear
system is perfectly conditioned) and the update is ``(sigma_min U V^T)^T p`` for task
preferences ``p``. On the Gram matrix ``G = M M^T = U S^2 U^T`` this is::

    w = sigma_min * G^{-1/2} p          (pseudo-inverse square root on the range of G)

``sigma_min`` is the smallest singular value above ``rtol`` times the largest, so
rank-deficient gradients are aligned inside their span. Invariant to a common positive
rescaling of the gradients. With orthogonal gradients of equal norm it is linear
scalarisation with ``p``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float
from ._simplex import matvec, normalize_gram
from .base import Rule, State
from .linear import check_preferences


class AlignedMTL(Rule):
    """Aligned-MTL on the representation gradients (see module docstring).

    Args:
        num_tasks: number of tasks.
        preferences: task preferences ``p`` (``>= 0``, not all zero); default all ones.
        rtol: eigenvalues of ``G`` below ``rtol`` times the largest count as zero,
            in (0, 1).
    """

    name = "aligned_mtl"

    def __init__(
        self,
        num_tasks: int,
        *,
        preferences: Sequence[float] | Tensor | None = None,
        rtol: float = 1e-12,
    ) -> None:
        super().__init__(num_tasks)
        self.preferences = check_preferences("preferences", preferences, self.num_tasks)
        self.rtol = check_float("rtol", rtol, low=0.0, high=1.0, low_open=True, high_open=True)

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        g = normalize_gram(gram, ridge=0.0)
        lam, vec = torch.linalg.eigh(g)
        keep = lam > self.rtol * lam[-1].clamp_min(1e-300)
        safe = torch.where(keep, lam, torch.ones_like(lam))
        sigma_min = torch.where(keep, lam, torch.full_like(lam, torch.inf)).min().sqrt()
        inv_sqrt = torch.where(keep, sigma_min / safe.sqrt(), torch.zeros_like(lam))
        p = torch.tensor(self.preferences, dtype=g.dtype, device=g.device)
        w = matvec(vec, inv_sqrt * matvec(vec.T, p))
        w = torch.where(keep.any(), w, p)  # all gradients zero: nothing to align
        return w.to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "preferences": list(self.preferences),
            "rtol": self.rtol,
        }
