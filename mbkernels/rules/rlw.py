"""Random loss weighting (RLW): softmax of normal draws, new ones every step.

Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
Learning", TMLR 2022 (arXiv 2111.10603), Algorithm 2: draw ``z ~ N(0, I_T)`` each step
and weight the tasks by ``w = softmax(z)`` (weights sum to 1: the update is on the scale
of one gradient, like TorchJD's ``Random`` and LibMTL's ``RLW``). The rule reads nothing
of the Gram matrix.

The draws are a pure function of ``(seed, step)`` (:func:`rlw_normals`): a counter-based
integer hash (as PCGrad's visiting order, :func:`~mbkernels.rules.pcgrad_orders`) gives
two uniforms per task and the Box-Muller transform turns them into standard normals, on
the device, without host synchronisation. No generator state to store: the balancer's
step count (in its ``state_dict``) is the position in the stream, so a restored
checkpoint continues the same stream. Under ``nonfinite="skip_task"`` the softmax runs
over the active tasks only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_int
from .base import Rule, State

_MOD = 2_147_483_647  # 2^31 - 1: products with the multipliers below stay inside int64


def _mix(x: Tensor) -> Tensor:
    for mult, add in ((48_271, 11), (69_621, 7_919), (16_807, 104_729), (39_373, 1_103)):
        x = (x * mult + add) % _MOD
        x = x ^ (x >> 13)
    return x


def rlw_normals(seed: int, step: Tensor | int, num_tasks: int, device=None) -> Tensor:
    """``[T]`` float64 standard normal draws of step ``step`` for ``seed``."""
    step_t = torch.as_tensor(step, dtype=torch.int64, device=device)
    base = _mix((step_t * 1_000_003 + seed * 7_919 + 12_345) % _MOD)
    idx = torch.arange(2 * num_tasks, dtype=torch.int64, device=step_t.device)
    keys = _mix(_mix((base + idx * 2_654_435) % _MOD) + idx)
    # uniforms in (0, 1): (k + 0.5) / (2^31 - 1) for k in [0, 2^31 - 1)
    uniform = (keys % _MOD).to(torch.float64).add_(0.5).div_(_MOD).reshape(2, num_tasks)
    radius = (-2.0 * uniform[0].log()).sqrt()
    return radius * torch.cos((2.0 * math.pi) * uniform[1])


class RLW(Rule):
    """Random loss weighting (see module docstring).

    Args:
        num_tasks: number of tasks.
        seed: integer >= 0 that, with the step number, fixes the draws.
    """

    name = "rlw"
    uses_cross_terms = False  # random weights: reads nothing of the Gram matrix

    def __init__(self, num_tasks: int, *, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.seed = check_int("seed", seed, low=0)

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        z = rlw_normals(self.seed, step, self.num_tasks, device=gram.device)
        return torch.softmax(z, dim=0).to(gram.dtype), {}

    def weights_subset(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor
    ) -> tuple[Tensor, State]:
        """The softmax over the active tasks' draws; inactive tasks get weight 0."""
        z = rlw_normals(self.seed, step, self.num_tasks, device=gram.device)
        w = torch.softmax(z.masked_fill(~active, -torch.inf), dim=0)
        return torch.where(active, w, torch.zeros_like(w)).to(gram.dtype), {}

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "seed": self.seed}
