"""IMTL-G: the combination whose projections on every task direction are equal.

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 (the gradient half). It
seeks ``d = sum_t w_t g_t`` with ``sum_t w_t = 1`` and ``<d, u_t>`` the same for every
unit direction ``u_t = g_t / ||g_t||``. With ``n_t = ||g_t||`` the condition reads
``G w = lam * n``, so on the Gram matrix::

    w = G^+ n / (1^T G^+ n)

(the paper's closed form with the differences ``g_1 - g_t`` solves the same system).
With ``G = D C D`` (``D = diag(n)``, ``C`` the cosine matrix of the unit directions) the
solution is ``w = D^-1 C^+ 1``, normalised to sum 1, and that is how it is computed: the
pseudo-inverse of ``C`` (unit diagonal, whatever the task scales), then a division by
each task's own norm. The combined update ``sum_t w_t g_t = sum_t (C^+ 1)_t u_t / s``
depends on the unit directions only, so rescaling one task by any factor (1e8, 1e-8)
leaves the combined *line* unchanged in float64 (its sign follows ``s = sum_t w_t``
before normalisation, which can flip). Solving with ``G^+`` directly would mix norms
eight orders of magnitude apart in one pseudo-inverse and lose that invariance.
Rank-deficient directions give the least-squares answer; a zero-gradient task gets
weight 0. If ``s`` vanishes, the rule falls back to equal weights ``1/T``. Invariant to a
common positive rescaling of the gradients.

The common projection is ``lam = 1 / (1^T G^+ n)``. The normalisation ``sum_t w_t = 1``
does not make it positive: with strongly conflicting gradients (T >= 3) ``lam`` can be
negative, and the update then points against every task direction. This is the
published formula; it is kept as is and visible in ``stats`` (combined . g_t < 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ._cosine import unit_cosine
from ._simplex import matvec
from .base import Rule, State


class IMTLG(Rule):
    """Impartial gradient combination (see module docstring)."""

    name = "imtl_g"

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        g, present, safe, cosine = unit_cosine(gram)
        ones = present.to(g.dtype)
        pinv = torch.linalg.pinv(cosine, hermitian=True)
        x = torch.where(present, matvec(pinv, ones) / safe, torch.zeros_like(ones))
        total = x.sum()
        # s is "zero" when it is at the rounding level of the terms it sums: those of
        # C^+ 1 (whose entries can themselves cancel to noise, e.g. for opposite gradients)
        terms = torch.where(present, matvec(pinv.abs(), ones) / safe, torch.zeros_like(ones))
        ok = torch.isfinite(total) & (total.abs() > 1e-10 * terms.sum().clamp_min(1e-300))
        safe_total = torch.where(ok, total, torch.ones_like(total))
        w = torch.where(ok, x / safe_total, torch.full_like(x, 1.0 / self.num_tasks))
        return w.to(gram.dtype), {}
