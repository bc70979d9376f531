"""A two-objective toy in 2-D with an analytic Pareto front, for optimisation trajectories.

Two convex quadratics of a point ``x`` in the plane::

    f_t(x) = s_t * (x - c_t)^T A_t (x - c_t) / 2,      t = 1, 2

with centres ``c_t``, positive-definite curvatures ``A_t`` and loss scales ``s_t``.
The Pareto set is the curve of minimisers of the scalarisations
``lam * f_1 + (1 - lam) * f_2`` for ``lam`` in [0, 1], in closed form::

    x*(lam) = (lam s_1 A_1 + (1-lam) s_2 A_2)^-1 (lam s_1 A_1 c_1 + (1-lam) s_2 A_2 c_2)

Here the point ``x`` itself plays the shared representation: the task gradients
``g_t = grad f_t(x)`` go through a rule (:meth:`mbkernels.Balancer.step_weights` on
their Gram matrix) and ``x <- x - lr * sum_t w_t g_t``. Any rule with positive weights
stops only where the weighted gradients cancel, i.e. on the Pareto set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mbkernels.validation import check_float, check_int

from ..rules import make_balancer


def _rotation(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


class QuadraticToy:
    """Two anisotropic quadratics in the plane (see module docstring).

    Args:
        scale_ratio: ``s_2 / s_1`` (``s_1 = 1``): the magnitude imbalance.
        centers: the two single-task optima ``c_1, c_2``.
        condition: ratio of the curvatures' eigenvalues (1 = round bowls).
        rotation: angle in degrees between the two bowls' main axes.
    """

    def __init__(
        self,
        scale_ratio: float = 1.0,
        *,
        centers: Sequence[Sequence[float]] = ((-1.0, 0.0), (1.0, 0.5)),
        condition: float = 4.0,
        rotation: float = 60.0,
    ) -> None:
        self.scale_ratio = check_float("scale_ratio", scale_ratio, low=0.0, high=1e6, low_open=True)
        check_float("condition", condition, low=1.0, high=1e6)
        c = np.asarray(centers, dtype=np.float64)
        if c.shape != (2, 2):
            raise ValueError(f"centers must have shape (2, 2), got {c.shape}")
        self.centers = c
        base = np.diag([1.0, float(condition)])
        r1, r2 = _rotation(0.0), _rotation(rotation)
        self.curvatures = np.stack([r1 @ base @ r1.T, r2 @ base @ r2.T])
        self.scales = np.array([1.0, self.scale_ratio])
        self.task_names = ("f1", "f2")

    # ----------------------------------------------------------- the objectives
    def losses(self, x: np.ndarray) -> np.ndarray:
        """``[..., 2]`` points -> ``[..., 2]`` objective values."""
        x = np.asarray(x, dtype=np.float64)
        out = []
        for c, a, s in zip(self.centers, self.curvatures, self.scales):
            d = x - c
            out.append(0.5 * s * np.einsum("...i,ij,...j->...", d, a, d))
        return np.stack(out, axis=-1)

    def grads(self, x: np.ndarray) -> np.ndarray:
        """``[2]`` point -> ``[2 tasks, 2 coords]`` gradients."""
        x = np.asarray(x, dtype=np.float64)
        return np.stack(
            [s * a @ (x - c) for c, a, s in zip(self.centers, self.curvatures, self.scales)]
        )

    # ------------------------------------------------------------ analytic front
    def pareto_point(self, lam: float) -> np.ndarray:
        """The minimiser of ``lam f_1 + (1 - lam) f_2`` (closed form)."""
        w = np.array([lam, 1.0 - lam]) * self.scales
        h = w[0] * self.curvatures[0] + w[1] * self.curvatures[1]
        b = (
            w[0] * self.curvatures[0] @ self.centers[0]
            + w[1] * self.curvatures[1] @ self.centers[1]
        )
        return np.linalg.solve(h, b)

    def pareto_set(self, n: int = 101) -> np.ndarray:
        """``[n, 2]`` points of the Pareto set, from ``c_2`` (lam=0) to ``c_1`` (lam=1)."""
        check_int("n", n, low=2)
        return np.stack([self.pareto_point(lam) for lam in np.linspace(0.0, 1.0, n)])

    def pareto_front(self, n: int = 101) -> np.ndarray:
        """``[n, 2]`` objective values ``(f_1, f_2)`` along the Pareto set."""
        return self.losses(self.pareto_set(n))

    def distance_to_pareto_set(self, x: np.ndarray, n: int = 2001) -> float:
        """Euclidean distance from ``x`` to a fine sampling of the Pareto set."""
        ps = self.pareto_set(n)
        return float(np.min(np.linalg.norm(ps - np.asarray(x)[None, :], axis=1)))

    # --------------------------------------------------------------- trajectories
    def trajectory(
        self,
        rule: str,
        start: Sequence[float] = (0.0, 2.0),
        *,
        steps: int = 200,
        lr: float = 0.05,
        **rule_kwargs: object,
    ):  # -> pandas.DataFrame
        """Optimise from ``start`` with ``rule`` on the task gradients; one row per step.

        Columns: ``rule, step, x, y, f1, f2, w1, w2, cos``.
        """
        from .._deps import require

        pd = require("pandas")
        check_int("steps", steps, low=1)
        check_float("lr", lr, low=0.0, high=10.0, low_open=True)
        bal = make_balancer(rule, 2, **rule_kwargs)  # type: ignore[arg-type]
        x = np.asarray(start, dtype=np.float64).copy()
        rows = []
        for k in range(steps + 1):
            g = self.grads(x)
            gram = torch.as_tensor(g @ g.T, dtype=torch.float32)
            f = self.losses(x)
            n = np.linalg.norm(g, axis=1)
            cos = float(g[0] @ g[1] / (n[0] * n[1])) if n.min() > 0 else 0.0
            if k == steps:
                w = np.array([np.nan, np.nan])
            else:
                w = bal.step_weights(gram).double().numpy()
            rows.append((rule, k, x[0], x[1], f[0], f[1], w[0], w[1], cos))
            if k < steps:
                x = x - lr * (w[0] * g[0] + w[1] * g[1])
        return pd.DataFrame(rows, columns=["rule", "step", "x", "y", "f1", "f2", "w1", "w2", "cos"])
