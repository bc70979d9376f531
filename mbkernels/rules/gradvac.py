"""GradVac ("gradient vaccine") expressed on the Gram matrix.

Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021. Every ordered pair of tasks ``(i, j)`` keeps
an EMA target ``phi_hat_ij`` of the cosine similarity between ``g_i`` and ``g_j``. For
every task i, starting from ``g_i' = g_i`` and visiting the other tasks j in a random
order, with ``phi = cos(g_i', g_j)``::

    if phi < phi_hat_ij:
        g_i' <- g_i' + ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
                       / (||g_j|| sqrt(1 - phi_hat^2)) * g_j
    phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi

(the correction turns ``g_i'`` so that its cosine with ``g_j`` is the target), and the
update is ``sum_i g_i'``. As in :class:`~mbkernels.rules.PCGrad`, every ``g_i'`` is a
combination ``sum_k C_ik g_k`` and all the quantities are inner products
(``<g_i', g_j> = (C G)_ij``, ``||g_i'||^2 = (C G C^T)_ii``), so the rule tracks ``C``,
``C G`` and the squared norms on the Gram matrix (a correction ``g_i' += s g_j`` adds ``s``
to ``C_ij``, ``s G_j`` to row i of ``C G`` and ``s (2 <g_i', g_j> + s G_jj)`` to
``||g_i'||^2``) and returns the column sums of ``C``. The ``T - 1`` visiting rounds run for all
tasks at once; the order is :func:`~mbkernels.rules.pcgrad_orders` of ``(seed, step)``.

``eps`` is added to the denominators as in the authors' code (and TorchJD), but on the
Gram matrix divided by its mean diagonal, so the rule does not depend on the scale of
the gradients. A pair whose ``g_j`` is exactly zero is not corrected (its cosine is
taken as 0 for the EMA). State: ``phi_hat`` (``[T, T]``, starts at 0; the diagonal is
unused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..validation import check_float, check_int
from ._simplex import normalize_gram
from .base import Rule, State
from .pcgrad import pcgrad_orders


class GradVac(Rule):
    """Gradient vaccine on the Gram matrix (see module docstring).

    Args:
        num_tasks: number of tasks.
        beta: EMA rate of the cosine targets in [0, 1] (the weight of the new cosine; the
            paper's 0.01; LibMTL's and TorchJD's default is 0.5).
        eps: added to the denominators, relative to the mean squared gradient norm, in
            [0, 1].
        seed: integer >= 0 that, with the step number, fixes the visiting order.
    """

    name = "gradvac"

    def __init__(
        self, num_tasks: int, *, beta: float = 0.01, eps: float = 1e-8, seed: int = 0
    ) -> None:
        super().__init__(num_tasks)
        self.beta = check_float("beta", beta, low=0.0, high=1.0)
        self.eps = check_float("eps", eps, low=0.0, high=1.0)
        self.seed = check_int("seed", seed, low=0)

    def init_state(self, device: torch.device | None = None) -> State:
        t = self.num_tasks
        return {"phi_hat": torch.zeros(t, t, dtype=torch.float32, device=device)}

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return self._weights(gram, state, step, None)

    def weights_subset(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor
    ) -> tuple[Tensor, State]:
        """Inactive tasks get weight 0 and every target involving one is held."""
        return self._weights(gram, state, step, active)

    def _weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor | None
    ) -> tuple[Tensor, State]:
        t = self.num_tasks
        g = normalize_gram(gram, ridge=0.0)
        if active is not None:
            both = active[:, None] & active[None, :]
            g = torch.where(both, g, torch.zeros_like(g))
        old = state["phi_hat"]
        phi_hat = old.to(g.dtype)
        w = torch.ones(t, dtype=g.dtype, device=g.device)  # column sums of C = I
        if t > 1:
            rows = torch.arange(t, device=g.device)
            orders = pcgrad_orders(self.seed, step, t, device=g.device)  # [T, T-1]
            sq_all = g.diagonal().clamp_min(0)
            # everything about the visited g_j, for all rounds at once: each pair (i, j) is
            # visited once per step, so its target is read before any update of it
            sq_j = sq_all[orders]
            norm_j = sq_j.sqrt()
            g_j = g[orders]  # [T, T-1, T]: row j(i, k) of G
            target = phi_hat.gather(1, orders)
            root_target = (1.0 - target * target).clamp_min(0).sqrt()
            denom = norm_j * root_target + self.eps
            movable = norm_j > 0
            cg = g  # row i: <g_i', g_k> for every k, i.e. (C G)_i
            sq_i = sq_all  # ||g_i'||^2, updated with each correction
            phis, sizes = [], []
            for k in range(t - 1):
                dot = cg[rows, orders[:, k]]
                norm_i = sq_i.clamp_min(0).sqrt()
                phi = dot / (norm_i * norm_j[:, k] + self.eps)
                tk = target[:, k]
                root_phi = (1.0 - phi * phi).clamp_min(0).sqrt()
                size = norm_i * (tk * root_phi - phi * root_target[:, k]) / denom[:, k]
                size = torch.where((phi < tk) & movable[:, k], size, 0.0)
                # g_i' <- g_i' + size g_j, on the inner products and the squared norm
                cg = cg + size[:, None] * g_j[:, k]
                sq_i = sq_i + size * (2.0 * dot + size * sq_j[:, k])
                phis.append(phi)
                sizes.append(size)
            # C = I + the corrections at (i, j(i, k)); its column sums are the weights
            w = w.index_add(0, orders.T.reshape(-1), torch.cat(sizes))
            phi_new = (1.0 - self.beta) * target + self.beta * torch.stack(phis, 1)
            phi_hat = phi_hat.scatter(1, orders, phi_new)
        # a cosine is in [-1, 1]; rounding may step outside by an ulp
        new = phi_hat.clamp(-1.0, 1.0).to(old.dtype)
        if active is not None:
            w = torch.where(active, w, torch.zeros_like(w))
            new = torch.where(active[:, None] & active[None, :], new, old)
        return w.to(gram.dtype), {"phi_hat": new}

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        """The cosine targets are in ``[-1, 1]``."""
        phi_hat = state["phi_hat"]
        if bool((phi_hat.abs() > 1).any()):
            raise ValueError(
                f"state_dict entry {prefix + 'phi_hat'!r} must be in [-1, 1] (EMA of "
                f"cosine similarities), got {phi_hat.tolist()}"
            )

    def config(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "beta": self.beta, "eps": self.eps, "seed": self.seed}
