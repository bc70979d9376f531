"""A synthetic multi-task regression problem with a shared representation and known optimum.

Inputs ``x ~ N(0, I_d)``. Task ``t`` has a unit direction ``a_t`` and target
``y_t = a_t . x + noise * eps``, ``eps ~ N(0, 1)``. Three knobs:

- ``angle`` (degrees): the directions of the tasks are spread evenly over this angle in
  one plane (for two tasks: the angle between them). 0 = identical tasks; 90 = unrelated;
  above 90 their gradients on the shared representation point against each other early in
  training. (With a learned linear tower the *losses* depend on ``|cos|``: a tower can flip
  sign; the conflict is in the gradients the shared layer sees.)
- ``scale_ratio``: training loss of task ``t`` is multiplied by
  ``scale_ratio ** (t / (T - 1))``: the last task's gradients are ``scale_ratio`` times larger.
- ``noise``: label noise standard deviation; with the batch size it sets the gradient noise.
- ``outliers``: fraction of labels that get ten times the noise (heavy tails, as rare
  extreme examples give real data): mini-batch gradient norms then jump from batch to
  batch, which is what MultiBalance's moving average is for.

Known single-task optimum: a model that fits task ``t`` alone reaches expected squared
error ``noise**2 * (1 + 99 * outliers)`` (test RMSE its square root), since ``a_t . x`` is
linear and the model contains every linear map. With ``rep_dim < T`` (default
``rep_dim=1``, linear bottom) the tasks must share too few features: no single model
reaches every optimum, and the weights decide which trade-off training lands on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mbkernels.validation import check_choice, check_float, check_int

from ..models import DenseSharedBottom
from .base import Batch, MultiTaskProblem


class SyntheticProblem(MultiTaskProblem):
    """Synthetic shared-representation regression (see module docstring)."""

    archs = ("linear", "mlp")

    def __init__(
        self,
        num_tasks: int = 2,
        *,
        angle: float = 120.0,
        scale_ratio: float = 10.0,
        noise: float = 0.5,
        outliers: float = 0.0,
        in_dim: int = 8,
        rep_dim: int = 1,
        eval_size: int = 4096,
        seed: int = 0,
    ) -> None:
        self._num_tasks = check_int("num_tasks", num_tasks, low=1, high=64)
        self.angle = check_float("angle", angle, low=0.0, high=180.0)
        self.scale_ratio = check_float("scale_ratio", scale_ratio, low=0.0, high=1e6, low_open=True)
        self.noise = check_float("noise", noise, low=0.0, high=100.0)
        self.outliers = check_float("outliers", outliers, low=0.0, high=1.0)
        self.in_dim = check_int("in_dim", in_dim, low=2)
        self.rep_dim = check_int("rep_dim", rep_dim, low=1)
        self.eval_size = check_int("eval_size", eval_size, low=16)
        self.seed = check_int("seed", seed, low=0)
        T = self._num_tasks
        self.task_names = tuple(f"task{t + 1}" for t in range(T))
        self.task_kinds = ("regression",) * T
        self.loss_scales = tuple(
            float(self.scale_ratio ** (t / (T - 1))) if T > 1 else 1.0 for t in range(T)
        )
        # Unit directions spread over `angle` in a random plane (fixed by `seed`).
        rng = np.random.default_rng(seed)
        basis, _ = np.linalg.qr(rng.standard_normal((in_dim, 2)))
        phis = [math.radians(self.angle) * (t / (T - 1) if T > 1 else 0.0) for t in range(T)]
        dirs = np.stack([math.cos(p) * basis[:, 0] + math.sin(p) * basis[:, 1] for p in phis])
        self.directions = torch.as_tensor(dirs, dtype=torch.float32)  # [T, d]
        self._splits = {
            "val": self._draw(eval_size, torch.Generator().manual_seed(seed + 1_000_003)),
            "test": self._draw(eval_size, torch.Generator().manual_seed(seed + 2_000_003)),
        }

    @property
    def num_tasks(self) -> int:
        return self._num_tasks

    def _draw(self, n: int, generator: torch.Generator) -> Batch:
        x = torch.randn(n, self.in_dim, generator=generator)
        eps = torch.randn(n, self.num_tasks, generator=generator)
        if self.outliers > 0:
            big = torch.rand(n, self.num_tasks, generator=generator) < self.outliers
            eps = torch.where(big, 10.0 * eps, eps)
        y = x @ self.directions.T + self.noise * eps
        return Batch((x,), y, torch.ones_like(y, dtype=torch.bool))

    def make_model(self, arch: str = "linear") -> DenseSharedBottom:
        """``"linear"``: ``z = W x`` (``rep_dim`` features), linear towers — the setting
        with the known optimum. ``"mlp"``: a ReLU bottom (64 units) and small towers."""
        check_choice("arch", arch, self.archs)
        if arch == "linear":
            return DenseSharedBottom(self.in_dim, self.num_tasks, rep_dim=self.rep_dim, linear=True)
        return DenseSharedBottom(
            self.in_dim, self.num_tasks, rep_dim=self.rep_dim, hidden=(64,), tower_hidden=16
        )

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        check_int("batch_size", batch_size, low=1)
        return self._draw(batch_size, generator)

    def split(self, name: str) -> Batch:
        check_choice("split", name, ("val", "test"))
        return self._splits[name]

    def optimal_losses(self) -> Tensor:
        """Expected unscaled squared error of the single-task optimum, per task (``noise**2``)."""
        return torch.full((self.num_tasks,), self.noise**2 * (1 + 99 * self.outliers))

    def optimal_rmse(self) -> dict[str, float]:
        """Test RMSE each task reaches when trained alone, in expectation."""
        r = float(self.optimal_losses()[0].sqrt())
        return {n: r for n in self.task_names}

    def gradient_cosine_at_init(self) -> float:
        """Cosine between the first and last task's directions (``cos(angle)``)."""
        return float(self.directions[0] @ self.directions[-1])
