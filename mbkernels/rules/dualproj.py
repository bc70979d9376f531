"""DualProj: project the combined gradient onto the dual cone of the task gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (after GEM,
Lopez-Paz & Ranzato, NeurIPS 2017, Eq. 11). The preference-weighted sum ``J^T p`` is
projected onto ``{x : <x, g_t> >= 0 for every t}``::

    d = pi_J(J^T p) = J^T v,    v = argmin_v v^T H v  subject to  v >= p,
    H = G / tr(G) + reg_eps I

so the task weights are ``w = v``: one box-constrained QP, solved exactly on the Gram
matrix by active-set enumeration (:mod:`mbkernels.rules._dual_cone`). With no conflict
``J^T p`` is already in the cone and DualProj is linear scalarisation with ``p``.

The hyperparameters map to TorchJD's ``DualProj(pref_vector, QuadprogProjector(norm_eps,
reg_eps))`` as for :class:`~mbkernels.rules.UPGrad` (our default ``p`` is all ones,
TorchJD's ``1/T``: our default update is ``T`` times TorchJD's default one).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ._dual_cone import DualConeRule, project_weights
from .base import State


class DualProj(DualConeRule):
    """Dual-cone projection of the preference-weighted sum (see module docstring).

    Args: ``num_tasks`` in [1, 12]; ``preferences`` ``p`` (``>= 0``, not all zero; default
    all ones); ``reg_eps`` in [0, 1] (default 1e-4) and ``norm_eps`` in [0, inf) (default 0),
    as in the module docstring.
    """

    name = "dualproj"

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        h, p = self._problem(gram)
        return project_weights(h, p, separate=False)[0].to(gram.dtype), {}
