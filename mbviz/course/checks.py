"""Self-checks for the course's exercises.

Each check recomputes the expected answer independently (float64, straight
from the formula in the notebook's text), prints a short verdict and returns
whether the answer is right. A check never raises on a wrong or missing
answer: an exercise left as ``None`` is reported as "not answered yet", so the
notebooks still execute top to bottom (nbval) before anybody solves them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mbkernels import Balancer
from mbkernels.rules import MultiBalanceRule

from .traffic import ITEMSIZE, bytes_moved


def _verdict(ok: bool, name: str, hint: str) -> bool:
    print(f"[{name}] " + ("correct!" if ok else f"not quite. Hint: {hint}"))
    return ok


def _not_answered(name: str) -> bool:
    print(f"[{name}] not answered yet: replace the `None` above with your answer.")
    return False


def check_multibalance_weights(
    answer: Sequence[float] | torch.Tensor | None, bal: Balancer
) -> bool:
    """Exercise 00/02: the weights of a MultiBalance step computed by hand from its EMA.

    The expected value is recomputed in float64 from ``bal.stats.ema`` and the
    rule's hyperparameters with ``w_t = relax * m_ref / (m_t + eps) + (1 - relax)``
    (``m = ema`` divided by the bias correction ``1 - beta**step``).
    """
    name = "MultiBalance weights"
    if answer is None:
        return _not_answered(name)
    rule = bal.rule
    stats = bal.stats
    if not isinstance(rule, MultiBalanceRule) or stats is None or stats.ema is None:
        raise ValueError("bal must be a MultiBalance balancer that has taken at least one step")
    cfg = rule.config()
    step = int(stats.step.item())
    m = stats.ema.double().cpu()
    if cfg["bias_correction"]:
        m = m / (1.0 - cfg["beta"] ** step)
    ref = {"target": lambda: m[cfg["target"]], "mean": m.mean, "max": m.max}[cfg["reference"]]()
    expected = torch.where(
        m > 0, cfg["relax"] * ref / (m + cfg["eps"]) + (1 - cfg["relax"]), torch.ones_like(m)
    )
    got = torch.as_tensor(answer, dtype=torch.float64).flatten().cpu()
    if got.shape != expected.shape:
        return _verdict(False, name, f"give one weight per task ({expected.numel()} numbers)")
    ok = bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-6))
    return _verdict(
        ok,
        name,
        "w_t = relax * m_ref / m_t + (1 - relax), with m = bal.stats.ema (the reference "
        "task's m over each task's m)",
    )


def check_bytes_moved(
    answer: int | float | None, *, num_tasks: int, numel: int, dtype: str, method: str = "fused"
) -> bool:
    """Exercise 06: bytes the fused (or naive) step must move for T gradients of N elements."""
    name = f"bytes moved ({method})"
    if answer is None:
        return _not_answered(name)
    expected = bytes_moved(num_tasks, numel, dtype, method)
    ok = abs(float(answer) - expected) <= 1e-9 * expected
    reads = "2T reads and 1 write" if method == "fused" else "count every read and write"
    return _verdict(ok, name, f"{reads} of N elements of {ITEMSIZE.get(dtype)} bytes each")
