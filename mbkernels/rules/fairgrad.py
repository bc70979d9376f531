"""FairGrad: alpha-fair allocation of the update among the tasks, on the Gram matrix.

Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024. Each task's
"utility" is its first-order gain ``<d, g_t>``; maximising the alpha-fair sum of the
utilities over ``||d|| <= 1`` gives ``d = sum_t w_t g_t`` with::

    G w = w^(-1/alpha),   w > 0       (elementwise: <d, g_t> = w_t^(-1/alpha))

``alpha = 1`` is proportional fairness (Nash-MTL's system without its normalisation),
``alpha -> inf`` approaches max-min fairness, small ``alpha`` approaches linear
scalarisation. The authors solve the system with SciPy's ``least_squares`` from
``w = 1/T`` (bounded to ``w >= 0``); here it is solved to rounding accuracy by Newton's
method on the convex function ``1/2 w^T G w - sum_t h(w_t)``, ``h' = w^(-1/alpha)``
(:mod:`mbkernels.rules._power_system`, float64 NumPy on the host: a GPU Gram matrix is
copied once per step, one sync).

The weights are those of the system on ``G`` itself, as in the paper: scaling every
gradient by ``c`` scales the weights by ``c^(-2 alpha/(1+alpha))``. A task with an exactly
zero gradient gets weight 0 (its weight would be infinite; it contributes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..validation import check_float
from ._power_system import solve_power_system
from .base import Rule, State


class FairGrad(Rule):
    """alpha-fair weights ``G w = w^(-1/alpha)`` (see module docstring).

    Args:
        num_tasks: number of tasks.
        alpha: fairness parameter in (0, 1e3]; 1 is proportional fairness (LibMTL's
            default; the paper tunes it per benchmark).
    """

    name = "fairgrad"

    def __init__(self, num_tasks: int, *, alpha: float = 1.0) -> None:
        super().__init__(num_tasks)
        self.alpha = check_float("alpha", alpha, low=0.0, high=1e3, low_open=True)

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return solve_power_system(gram, 1.0 / self.alpha).to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "alpha": self.alpha}
