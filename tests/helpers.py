"""Small shared pieces for the tests: a toy multi-task model and float64 references."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ToyMultiTask(nn.Module):
    """bottom: Linear+tanh -> z [B, D]; tower t: Linear(D, 1); loss t scaled by 10**t / 4."""

    def __init__(self, num_tasks: int, d_in: int = 6, d: int = 5, dtype=torch.float32) -> None:
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(d_in, d, dtype=dtype), nn.Tanh())
        self.towers = nn.ModuleList(nn.Linear(d, 1, dtype=dtype) for _ in range(num_tasks))
        self.scales = [10.0 ** (t / 2) for t in range(num_tasks)]

    def task_losses(self, zs, y: Tensor) -> list[Tensor]:
        return [
            s * (tower(z_t).squeeze(-1) - y[:, t]).pow(2).mean()
            for t, (s, tower, z_t) in enumerate(zip(self.scales, self.towers, zs))
        ]


def multibalance_reference(
    grads: list[Tensor],
    ema: Tensor,
    step: int,
    *,
    beta: float,
    relax: float,
    reference: str,
    target: int,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor, Tensor]:
    """Float64 MultiBalance step written straight from the formula (no library code).

    Returns (combined gradient, new ema, weights).
    """
    g = [x.double() for x in grads]
    norms = torch.stack([x.norm() for x in g])
    ema = beta * ema.double() + (1 - beta) * norms
    m = ema / (1 - beta**step)
    ref = {"target": lambda: m[target], "mean": m.mean, "max": m.max}[reference]()
    w = torch.where(m > 0, relax * ref / (m + eps) + (1 - relax), torch.ones_like(m))
    combined = sum(w_t * g_t for w_t, g_t in zip(w, g))
    return combined, ema, w
