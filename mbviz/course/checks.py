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


def check_cosine(answer: float | None, g1: Sequence[float], g2: Sequence[float]) -> bool:
    """Exercise 01: the cosine similarity of two task gradients."""
    name = "cosine similarity"
    if answer is None:
        return _not_answered(name)
    a = torch.as_tensor(g1, dtype=torch.float64).flatten()
    b = torch.as_tensor(g2, dtype=torch.float64).flatten()
    expected = float(a @ b / (a.norm() * b.norm()))
    ok = abs(float(answer) - expected) < 1e-6
    return _verdict(ok, name, "cos = <g1, g2> / (||g1|| ||g2||); it lies in [-1, 1]")


def check_pareto_point(
    answer: Sequence[float] | None,
    *,
    lam: float,
    scales: Sequence[float],
    centers: Sequence[Sequence[float]],
    curvatures: Sequence[Sequence[Sequence[float]]],
) -> bool:
    """Exercise 03: the minimiser of ``lam f1 + (1 - lam) f2`` for two quadratics
    ``f_t(x) = s_t (x - c_t)^T A_t (x - c_t) / 2``: set the gradient of the weighted sum
    to zero, ``sum_t w_t s_t A_t (x - c_t) = 0``, and solve the 2x2 system."""
    name = "Pareto point"
    if answer is None:
        return _not_answered(name)
    w = torch.tensor([lam, 1.0 - lam], dtype=torch.float64) * torch.as_tensor(
        scales, dtype=torch.float64
    )
    a = torch.as_tensor(curvatures, dtype=torch.float64)
    c = torch.as_tensor(centers, dtype=torch.float64)
    h = w[0] * a[0] + w[1] * a[1]
    rhs = w[0] * a[0] @ c[0] + w[1] * a[1] @ c[1]
    expected = torch.linalg.solve(h, rhs)
    got = torch.as_tensor(answer, dtype=torch.float64).flatten()
    ok = got.shape == expected.shape and bool(torch.allclose(got, expected, atol=1e-6))
    return _verdict(
        ok, name, "solve (sum_t w_t s_t A_t) x = sum_t w_t s_t A_t c_t with w = (lam, 1 - lam)"
    )


def check_ema_noise_factor(answer: float | None, *, beta: float) -> bool:
    """Exercise 04: by what factor an EMA with decay ``beta`` shrinks the standard deviation
    of independent, equally noisy measurements (in the long run):
    ``Var(m) = (1 - beta)^2 sum_k beta^(2k) Var(n) = (1 - beta) / (1 + beta) Var(n)``."""
    name = "EMA noise factor"
    if answer is None:
        return _not_answered(name)
    expected = ((1.0 - beta) / (1.0 + beta)) ** 0.5
    ok = abs(float(answer) - expected) < 1e-4
    return _verdict(
        ok, name, "m = (1 - beta) * sum_k beta^k n_(t-k); add up the variances of independent "
        "terms, then take the square root"
    )  # fmt: skip


def check_delta_m(
    answer: float | None,
    *,
    method: dict[str, float],
    baseline: dict[str, float],
    higher_is_better: dict[str, bool],
) -> bool:
    """Exercise 05: Δm%, the mean relative change of each task's metric against its
    single-task baseline, signed so that positive is better."""
    name = "Δm%"
    if answer is None:
        return _not_answered(name)
    terms = []
    for task, b in baseline.items():
        sign = 1.0 if higher_is_better[task] else -1.0
        terms.append(sign * (method[task] - b) / b)
    expected = 100.0 * sum(terms) / len(terms)
    ok = abs(float(answer) - expected) < 1e-6 * max(1.0, abs(expected))
    return _verdict(
        ok, name, "per task (M_method - M_single) / M_single, with the sign flipped where lower "
        "is better (RMSE), averaged over tasks, times 100"
    )  # fmt: skip


def check_throughput_ratio(
    answer: float | None, *, num_tasks: int, backward_over_forward: float
) -> bool:
    """Exercise 07: throughput of T backward passes per step relative to one, when a
    backward costs ``backward_over_forward`` forwards (the forward is shared)."""
    name = "throughput ratio"
    if answer is None:
        return _not_answered(name)
    b = backward_over_forward
    expected = (1.0 + b) / (1.0 + num_tasks * b)
    ok = abs(float(answer) - expected) < 1e-4
    return _verdict(
        ok, name, "time per step = forward + backwards; one backward vs T backwards; "
        "throughput is 1 / time per step"
    )  # fmt: skip


def check_fork_step(
    step: object,
    *,
    make_model: object,
    batch: object,
    num_tasks: int,
    relax: float = 0.7,
    beta: float = 0.9,
    reference: str = "target",
    target: int = 0,
) -> bool:
    """Exercise 08: ``step(model, bal, optimizer, batch)`` is one training step of a plain
    loop with the fork added: ``bal(Z)`` on the shared tensor, view ``t`` read by task ``t``
    only, one backward of the summed loss, one optimiser step.

    ``step`` runs twice, on two copies of one ``make_model()`` and the same ``batch``:

    1. with a probe as ``bal``: plain autograd views of the tensor it is given, whose hooks
       record each task's gradient ``g_t = dL_t/dZ`` (no mbkernels code involved);
    2. with a fresh ``mbk.MultiBalance(num_tasks, beta, relax, reference, target)``,
       recording the gradient that reaches ``Z``.

    Correct when the balancer took exactly one step with the weights recomputed here in
    float64 (first step: the bias-corrected EMA is the norm, so
    ``w_t = relax * n_ref / n_t + (1 - relax)``), ``Z`` received ``sum_t w_t g_t``, and
    the optimiser changed the parameters.
    """
    import copy

    import mbkernels as mbk

    name = "fork in the training step"
    if step is None:
        return _not_answered(name)
    if not callable(step) or not callable(make_model):
        return _verdict(False, name, "pass your step function itself: step=my_step")

    class _Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_tasks = num_tasks
            self.calls = 0
            self.grads: list[torch.Tensor | None] = [None] * num_tasks

        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
            self.calls += 1
            views = tuple(z.view_as(z) for _ in range(num_tasks))
            for t, v in enumerate(views):
                if v.requires_grad:
                    v.register_hook(lambda g, t=t: self._record(t, g))
            return views

        def _record(self, t: int, g: torch.Tensor) -> None:
            prev = self.grads[t]
            self.grads[t] = g.detach().double() if prev is None else prev + g.detach().double()

    def run(bal: torch.nn.Module, model: torch.nn.Module, lr: float) -> str | None:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            try:
                step(model, bal, opt, batch)
            except Exception as exc:  # a learner's bug is a verdict, not a crash
                return f"your step raised {type(exc).__name__}: {exc}"
        return None

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = make_model()
    probe = _Probe()
    error = run(probe, copy.deepcopy(model), lr=0.0)
    if error:
        return _verdict(False, name, error)
    if probe.calls != 1:
        return _verdict(
            False,
            name,
            "call bal(z) exactly once per step, on the tensor every task reads "
            f"(it was called {probe.calls} times)",
        )
    missing = [t for t, g in enumerate(probe.grads) if g is None]
    if missing:
        return _verdict(
            False,
            name,
            f"view(s) {missing} of bal(z) got no gradient: task t must read zs[t], and only "
            "that view (did you detach z, or give every tower the same view?)",
        )
    g = torch.stack([gt for gt in probe.grads if gt is not None])  # [T, *Z.shape]

    bal = mbk.MultiBalance(num_tasks, beta=beta, relax=relax, reference=reference, target=target)
    seen: list[torch.Tensor] = []

    def grab(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        z = args[0]
        if isinstance(z, torch.Tensor) and z.requires_grad:
            z.register_hook(lambda grad: seen.append(grad.detach().double()))

    bal.register_forward_pre_hook(grab)
    model_b = copy.deepcopy(model)
    before = [p.detach().clone() for p in model_b.parameters()]
    error = run(bal, model_b, lr=0.1)
    if error:
        return _verdict(False, name, error)
    stats = bal.stats
    if stats is None or int(stats.step.item()) != 1:
        taken = 0 if stats is None else int(stats.step.item())
        return _verdict(
            False,
            name,
            "call backward once per step, on the sum of the task losses (the balancer saw "
            f"{taken} backward passes)",
        )
    n = g.flatten(1).norm(dim=1)
    ref = {"target": lambda: n[target], "mean": n.mean, "max": n.max}[reference]()
    w = torch.where(n > 0, relax * ref / (n + 1e-8) + (1.0 - relax), torch.ones_like(n))
    if not torch.allclose(stats.weights.double().cpu(), w.cpu(), rtol=1e-4, atol=1e-8):
        return _verdict(
            False,
            name,
            "the balancer's weights differ from relax * n_ref / n_t + (1 - relax) with "
            "n_t = ||dL_t/dZ||: does task t's loss reach the balancer through view t only?",
        )
    expected = torch.einsum("t,t...->...", w, g)
    got = sum(seen) if seen else None
    scale = float(expected.abs().max()) or 1.0
    if got is None or not torch.allclose(got, expected, rtol=1e-4, atol=1e-6 * scale):
        return _verdict(
            False,
            name,
            "Z's gradient is not sum_t w_t g_t: every use of Z must go through the views "
            "bal(z) returns",
        )
    moved = any(not torch.equal(a, b.detach()) for a, b in zip(before, model_b.parameters()))
    return _verdict(
        moved, name, "the parameters did not change: call optimizer.step() after backward()"
    )
