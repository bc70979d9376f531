"""MetaBalance on the shared parameters (He et al., WWW 2022), written from the paper.

For a target task and auxiliary tasks, and every shared parameter tensor ``theta``
separately, with ``G_t = dL_t / dtheta``::

    m_t <- beta * m_t + (1 - beta) * ||G_t||            (m_0 = 0, every task)
    G_aux <- relax * (m_target / m_aux) * G_aux + (1 - relax) * G_aux
    grad(theta) = G_target + sum_aux G_aux

so each auxiliary gradient is pulled towards the target's magnitude, per parameter.
The paper's defaults are ``beta = 0.9`` and ``relax = 0.7``. A parameter that has not
seen an auxiliary gradient yet (``m_aux = 0``) keeps that gradient's weight at 1.
It needs every task's gradient on every shared parameter: one backward per task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float, check_int
from .base import ParamBalancer


class MetaBalanceParams(ParamBalancer):
    """Parameter-level MetaBalance (see module docstring).

    Args:
        shared_params: parameters every task depends on.
        num_tasks: number of losses.
        target: index of the target ("main") task.
        beta: EMA decay in [0, 1).
        relax: relax factor in [0, 1]; 0 is the plain sum.
        eps: added to ``m_aux`` in the denominator, in (0, 1].
    """

    name = "metabalance_params"

    def __init__(
        self,
        shared_params: Iterable[Tensor],
        num_tasks: int,
        *,
        target: int = 0,
        beta: float = 0.9,
        relax: float = 0.7,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(shared_params, num_tasks)
        self.target = check_int("target", target, low=0, high=self.num_tasks - 1)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, high_open=True)
        self.relax = check_float("relax", relax, low=0.0, high=1.0)
        self.eps = check_float("eps", eps, low=0.0, high=1.0, low_open=True)
        # On the parameters' device: the norms it is averaged with are computed there.
        self.ema = torch.zeros(
            len(self.params), self.num_tasks, dtype=torch.float64, device=self.params[0].device
        )

    def combine(
        self, grads: list[list[Tensor]], gram: Tensor
    ) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
        norms = torch.stack(
            [torch.stack([g.detach().double().norm() for g in task]) for task in grads], dim=1
        )  # [P, T]
        ema = self.beta * self.ema + (1.0 - self.beta) * norms
        ref = ema[:, self.target : self.target + 1]
        w = self.relax * ref / (ema + self.eps) + (1.0 - self.relax)
        w = torch.where(ema > 0, w, torch.ones_like(w))
        w[:, self.target] = 1.0
        # A non-finite norm keeps the previous EMA: chosen on the device, no host sync.
        self.ema = torch.where(torch.isfinite(ema).all(), ema, self.ema)
        combined = []
        for i, p in enumerate(self.params):
            acc = torch.zeros_like(p, dtype=torch.float32 if p.dtype != torch.float64 else None)
            for t in range(self.num_tasks):
                acc = acc + w[i, t].to(acc.dtype) * grads[t][i].to(acc.dtype)
            combined.append(acc.to(p.dtype))
        return combined, w, {"ema": self.ema}

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "target": self.target,
            "beta": self.beta,
            "relax": self.relax,
            "eps": self.eps,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "ema": self.ema.clone()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._check_state(state_dict)
        ema = state_dict.get("ema")
        if not isinstance(ema, Tensor) or ema.shape != self.ema.shape:
            got = tuple(ema.shape) if isinstance(ema, Tensor) else type(ema).__name__
            raise ValueError(
                f"state_dict['ema'] has shape {got}, expected {tuple(self.ema.shape)} "
                f"(num_params, num_tasks)"
            )
        if not torch.isfinite(ema).all() or (ema < 0).any():
            raise ValueError("state_dict['ema'] must be finite and >= 0")
        super().load_state_dict(state_dict)
        self.ema = ema.detach().to(device=self.ema.device, dtype=torch.float64).clone()
