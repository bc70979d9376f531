"""IMTL-G: the combination whose projections on every task direction are equal.

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 (the gradient half). It
seeks ``d = sum_t w_t g_t`` with ``sum_t w_t = 1`` and ``<d, u_t>`` the same for every
unit direction ``u_t = g_t / ||g_t||``. With ``n_t = ||g_t||`` the condition reads
``G w = lam * n``, so on the Gram matrix::

    w = G^+ n / (1^T G^+ n)

(the paper's closed form with the differences ``g_1 - g_t`` solves the same system).
``G^+`` is the pseudo-inverse, so rank-deficient Gram matrices give the least-squares
answer, and a zero-gradient task gets weight 0. If ``1^T G^+ n`` vanishes, the rule
falls back to equal weights ``1/T``. Invariant to a common positive rescaling of the
gradients; rescaling single tasks leaves the combined *line* unchanged.

The common projection is ``lam = 1 / (1^T G^+ n)``. The normalisation ``sum_t w_t = 1``
does not make it positive: with strongly conflicting gradients (T >= 3) ``lam`` can be
negative, and the update then points against every task direction. This is the
published formula; it is kept as is and visible in ``stats`` (combined . g_t < 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ._simplex import matvec, normalize_gram
from .base import Rule, State


class IMTLG(Rule):
    """Impartial gradient combination (see module docstring)."""

    name = "imtl_g"

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        g = normalize_gram(gram, ridge=0.0)
        norms = g.diagonal().clamp_min(0).sqrt()
        x = matvec(torch.linalg.pinv(g, hermitian=True), norms)
        total = x.sum()
        ok = torch.isfinite(total) & (total.abs() > 1e-12 * x.abs().sum().clamp_min(1e-300))
        safe = torch.where(ok, total, torch.ones_like(total))
        w = torch.where(ok, x / safe, torch.full_like(x, 1.0 / self.num_tasks))
        return w.to(gram.dtype), {}
