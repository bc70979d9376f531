"""MultiBalance: reweight tasks by a moving average of their gradient magnitudes.

The rule (He, Chen et al., arXiv 2411.11871; after MetaBalance, He et al., WWW 2022)
as implemented here, for gradient norms ``n_t = ||dL_t/dZ||``::

    m_t <- beta * m_t + (1 - beta) * n_t           # EMA of magnitudes, m_0 = 0
    c_t <- c_t + 1                                 # updates of task t's EMA
    mhat_t = m_t / (1 - beta**c_t)                 # bias correction (optional)
    w_t = relax * mhat_ref / (mhat_t + eps) + (1 - relax)

with ``mhat_ref`` the reference magnitude: a target task's ("target"), or the
mean or max over tasks. The paper's full algorithm text is not public; this
follows its public description and MetaBalance, and exposes every choice.

Bias correction divides every ``m_t`` by the same factor, so it changes the
weights only through ``eps``; it keeps the EMA on the scale of the norms from
the first step (like Adam), which makes ``stats`` readable and ``eps`` meaningful.
Each task counts its own updates (state ``count``): normally every task's count
is the step number, but a task left out of a step (``nonfinite="skip_task"``)
holds its EMA *and* its count, so its held EMA keeps the correction of the step it
was last updated on, also when it serves as the reference magnitude.

A task whose EMA is exactly zero (it has produced no gradient yet: no labels,
an unused tower) gets weight 1; its gradient is zero, so this only keeps the
reported weights finite and meaningful.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from .. import _host
from ..validation import check_choice, check_float, check_int
from .base import Rule, State, check_magnitude_ema

Reference = Literal["target", "mean", "max"]
REFERENCES: tuple[str, ...] = ("target", "mean", "max")


class MultiBalanceRule(Rule):
    """The MultiBalance weighting rule (see module docstring)."""

    name = "multibalance"
    uses_cross_terms = False  # reads only the norms (the Gram diagonal)

    def __init__(
        self,
        num_tasks: int,
        *,
        beta: float = 0.9,
        relax: float = 0.7,
        reference: Reference | str = "target",
        target: int = 0,
        eps: float = 1e-8,
        bias_correction: bool = True,
    ) -> None:
        super().__init__(num_tasks)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, high_open=True)
        self.relax = check_float("relax", relax, low=0.0, high=1.0)
        self.reference = check_choice("reference", reference, REFERENCES)
        self.target = check_int("target", target, low=0, high=self.num_tasks - 1)
        self.eps = check_float("eps", eps, low=0.0, high=1.0, low_open=True)
        if not isinstance(bias_correction, bool):
            raise ValueError(f"bias_correction must be True or False, got {bias_correction!r}")
        self.bias_correction = bias_correction

    def init_state(self, device: torch.device | None = None) -> State:
        return {
            "ema": torch.zeros(self.num_tasks, dtype=torch.float32, device=device),
            "count": torch.zeros(self.num_tasks, dtype=torch.int64, device=device),
        }

    def weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor
    ) -> tuple[Tensor, State]:
        return self._weights(gram, state, step, None)

    def weights_subset(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor
    ) -> tuple[Tensor, State]:
        """Inactive tasks keep their EMA (it is not decayed) and its update count, and get
        weight 0; a target task that is inactive still serves as reference with its held
        EMA, bias-corrected for the updates it has had."""
        return self._weights(gram, state, step, active)

    def _weights(
        self, gram: Tensor, state: Mapping[str, Tensor], step: Tensor, active: Tensor | None
    ) -> tuple[Tensor, State]:
        # One code path for both; ``active=None`` (every task) skips the masking ops,
        # which matters because this runs in every backward (a handful of tiny ops).
        norms = gram.diagonal().clamp_min(0).sqrt()
        old = state["ema"].to(norms.dtype)
        ema = self.beta * old + (1.0 - self.beta) * norms
        count = state["count"] + 1
        corrected = count  # the count the bias correction uses: every task has one update
        if active is not None:
            ema = torch.where(active, ema, old)
            count = torch.where(active, count, state["count"])
            # a task never updated has EMA 0: a count of 1 keeps 0 / (1 - beta**c) at 0
            corrected = count.clamp_min(1)
        m = ema
        if self.bias_correction:
            m = ema / (1.0 - self.beta ** corrected.to(ema.dtype))
        if self.reference == "target":
            ref = m[self.target]
        elif active is None:
            ref = m.mean() if self.reference == "mean" else m.max()
        elif self.reference == "mean":
            present = active.sum().clamp_min(1).to(m.dtype)
            ref = torch.where(active, m, 0.0).sum() / present
        else:
            ref = torch.where(active, m, 0.0).max()
        w = self.relax * ref / (m + self.eps) + (1.0 - self.relax)
        # A task with no gradient history (EMA exactly 0) gets weight 1: finite, and
        # harmless since its gradient is 0.
        w = torch.where(m > 0, w, 1.0)
        if active is not None:
            w = torch.where(active, w, 0.0)
        return w, {"ema": ema.to(state["ema"].dtype), "count": count}

    def host_weights(
        self, sq_norms: list[float], state: Mapping[str, list[Any]], step: int
    ) -> tuple[list[float], dict[str, list[Any]]]:
        """:meth:`weights` (every task active) on host floats, operation for operation."""
        beta, relax, eps = self.beta, self.relax, self.eps
        # sqrt as a [T] float64 tensor op, as in weights(): torch's float64 sqrt is not
        # always libm's correctly rounded one
        if min(sq_norms) < 0.0:  # clamp_min(0) in Python (-0.0 stays, as in torch)
            sq_norms = [max(d, 0.0) for d in sq_norms]
        norms = _host.float64_op(sq_norms, torch.Tensor.sqrt_)
        ema = [beta * old + (1.0 - beta) * n for old, n in zip(state["ema"], norms)]
        count = [c + 1 for c in state["count"]]
        m = ema
        if self.bias_correction:
            # beta**c as a [T] float64 tensor op: torch's pow rounds differently from
            # libm's in the last bit now and then (and differently for vectorised and
            # scalar elements), so the tensor path's values come from torch too. Once
            # beta**c < 2**-60 for every task, 1 - beta**c is exactly 1.0 either way.
            # (beta**c shrinks as c grows: the smallest count has the largest power)
            if beta ** float(min(count)) < 2.0**-60:
                m = list(ema)
            else:
                powers = _host.float64_op(count, lambda c: torch.pow(beta, c, out=c))
                m = [e / (1.0 - p) for e, p in zip(ema, powers)]
        if self.reference == "target":
            ref = m[self.target]
        elif self.reference == "mean":  # torch's reduction order, not Python's
            ref = torch.tensor(m, dtype=torch.float64).mean().item()
        else:
            ref = max(m)
        scaled = relax * ref
        w = [scaled / (mt + eps) + (1.0 - relax) if mt > 0 else 1.0 for mt in m]
        return w, {"ema": _host.to_float32(ema), "count": count}

    def check_state(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        """The EMA of gradient magnitudes and the update counts are ``>= 0``."""
        check_magnitude_ema(state, prefix)

    def config(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "beta": self.beta,
            "relax": self.relax,
            "reference": self.reference,
            "target": self.target,
            "eps": self.eps,
            "bias_correction": self.bias_correction,
        }
