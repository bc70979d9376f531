"""UPGrad: project every task's gradient onto the dual cone of all of them, and sum.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024. With the task
gradients as the rows of ``J`` and preferences ``p``, each ``p_i g_i`` is projected onto
the dual cone ``{x : <x, g_t> >= 0 for every t}`` and the projections are added::

    d = sum_i pi_J(p_i g_i),    pi_J(J^T u) = J^T v(u),
    v(u) = argmin_v v^T H v  subject to  v >= u,        H = G / tr(G) + reg_eps I

so the task weights are ``w = sum_i v(p_i e_i)``. Every projection makes a non-negative
inner product with every ``g_t``, hence so does ``d`` (non-conflicting); a task without
conflict keeps its ``p_i g_i`` unchanged, so with no conflict at all UPGrad is linear
scalarisation with ``p``. The ``T`` box-constrained QPs are solved exactly on the Gram
matrix by active-set enumeration (:mod:`mbkernels.rules._dual_cone`).

TorchJD's ``UPGrad(pref_vector, QuadprogProjector(norm_eps, reg_eps))`` solves the same
QPs: ``preferences`` is its ``pref_vector`` (TorchJD's default is ``1/T`` each, ours 1
each, so our default update is ``T`` times TorchJD's default one), ``reg_eps`` is its
``reg_eps`` (added after the trace normalisation, as there), ``norm_eps`` its absolute
threshold under which ``tr(G)`` counts as zero (TorchJD's default 1e-4; 0 here, so that
the weights do not depend on the gradients' scale, which on the representation is set
by the batch size).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ._dual_cone import DualConeRule, project_weights
from .base import State


class UPGrad(DualConeRule):
    """Unconflicting projection of gradients (see module docstring).

    Args: ``num_tasks`` in [1, 12]; ``preferences`` ``p`` (``>= 0``, not all zero; default
    all ones); ``reg_eps`` in [0, 1] (default 1e-4) and ``norm_eps`` in [0, inf) (default 0),
    as in the module docstring.
    """

    name = "upgrad"

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        h, p = self._problem(gram)
        return project_weights(h, p, separate=True).sum(0).to(gram.dtype), {}
