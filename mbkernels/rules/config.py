"""ConFIG: the conflict-free direction with equal projections on every unit task direction.

Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks",
2024 (Eq. 2). With the unit task directions ``u_t = g_t / ||g_t||`` as the rows of ``U``
and preferences ``p``, the direction ``b = U^+ p`` solves ``U b = p`` (least squares for
dependent directions), so its projections on the unit directions are proportional to
``p``: no task conflicts with it when ``p >= 0``. The update is that direction scaled to
the sum of the task gradients' projections on it::

    b = U^+ p,    e = b / ||b||,    d = (sum_t <g_t, e>) e

On the Gram matrix, with ``n_t = ||g_t||``, ``D = diag(n)`` and the cosine matrix
``C = D^-1 G D^-1``: ``U^+ = U^T C^+``, so ``b = J^T x`` with ``x = D^-1 C^+ p``, and::

    w = x (1^T G x) / (x^T G x)

The pseudo-inverse sees unit directions only (as IMTL-G's), so one task's scale does not
enter it. A zero-gradient task gets weight 0; if ``b = 0`` the weights are 0, as TorchJD's
``ConFIG`` returns the zero vector there. That happens when every gradient is zero, when
every task with a gradient has zero preference, and when ``p`` has no component in the
range of ``C`` (e.g. two exactly opposite gradients with ``p = 1``). The last is decided
with a tolerance, ``||C C^+ p|| <= 1e-9 ||p||``: rounding leaves a tiny ``b`` of arbitrary
direction there, and the update would follow it. ``preferences`` is TorchJD's ``pref_vector``,
with the same default (all ones: the update is on the scale of the sum).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ._cosine import unit_cosine
from ._simplex import matvec
from .base import Rule, State
from .linear import check_preferences


class ConFIG(Rule):
    """Conflict-free inverse gradients (see module docstring).

    Args:
        num_tasks: number of tasks.
        preferences: ``p`` (``>= 0``, not all zero), the target projections on the unit
            task directions up to scale; default all ones.
    """

    name = "config"

    def __init__(
        self, num_tasks: int, *, preferences: Sequence[float] | Tensor | None = None
    ) -> None:
        super().__init__(num_tasks)
        self.preferences = check_preferences("preferences", preferences, self.num_tasks)

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        g, present, safe, cosine = unit_cosine(gram)
        p = torch.tensor(self.preferences, dtype=g.dtype, device=g.device)
        x = matvec(torch.linalg.pinv(cosine, hermitian=True), p)
        # b = 0 up to rounding: p is (numerically) orthogonal to the range of C
        in_range = matvec(cosine, x).norm() > 1e-9 * p.norm()
        x = torch.where(present, x / safe, torch.zeros_like(x))
        gx = matvec(g, x)
        sq = (x * gx).sum()
        ok = torch.isfinite(sq) & (sq > 0) & in_range
        w = torch.where(ok, x * gx.sum() / torch.where(ok, sq, torch.ones_like(sq)), 0.0)
        return w.to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "preferences": list(self.preferences)}
