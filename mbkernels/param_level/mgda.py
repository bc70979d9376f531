"""MGDA on the shared parameters (Sener & Koltun, NeurIPS 2018): the exact method that
MGDA-UB approximates on the representation.

With ``g_t`` the gradient of task t w.r.t. *all* shared parameters (flattened), the
shared parameters receive ``sum_t w_t g_t`` with ``w`` the min-norm point of the
convex hull, ``argmin_{w in simplex} ||sum_t w_t g_t||^2``, solved on the ``[T, T]``
Gram matrix by the same float64 solver as :class:`mbkernels.rules.MGDAUB`. Needs one
backward per task. The weights sum to 1.
"""

from __future__ import annotations

from torch import Tensor

from ..rules._simplex import min_norm_weights
from .base import ParamBalancer


class MGDAParams(ParamBalancer):
    """Parameter-level MGDA (see module docstring)."""

    name = "mgda_params"

    def combine(
        self, grads: list[list[Tensor]], gram: Tensor
    ) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
        w = min_norm_weights(gram)
        combined = []
        for i, p in enumerate(self.params):
            acc = sum(
                (w[t].to(p.dtype) * grads[t][i] for t in range(1, self.num_tasks)),
                w[0].to(p.dtype) * grads[0][i],
            )
            combined.append(acc)
        return combined, w.expand(len(self.params), -1), {}
