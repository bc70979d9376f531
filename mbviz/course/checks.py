"""Self-checks for the course's exercises.

Each check recomputes the expected answer independently (float64, straight
from the formula in the notebook's text), prints a short verdict and returns
whether the answer is right. A check never raises on a wrong or missing
answer: an exercise left as ``None`` is reported as "not answered yet", so the
notebooks still execute top to bottom (nbval) before anybody solves them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mbkernels import Balancer
from mbkernels.rules import MGDAUB, MultiBalanceRule

#: Answers are accepted when they are within half a percent of the exact value: what three
#: significant figures give, also when intermediate results were rounded to three figures
#: (1/3 typed as 0.333 is right).
SIGNIFICANT_FIGURES = 3
REL_TOL = 5e-3
#: Within this (two significant figures), a wrong answer is reported as a rounding problem.
ROUNDING_TOL = 5e-2


def _compare(got: Sequence[float], expected: Sequence[float], atol: float = 1e-9) -> str:
    """``"ok"`` when every number is within :data:`REL_TOL` of its expected value (or
    within ``atol``), ``"rounding"`` when every number is at least within
    :data:`ROUNDING_TOL` (rounded too early or too far), ``"wrong"`` otherwise."""
    verdict = "ok"
    for g, e in zip(got, expected):
        g, e = float(g), float(e)
        if not math.isfinite(g):
            return "wrong"
        err = abs(g - e)
        if err <= atol + REL_TOL * abs(e):
            continue
        if err <= atol + ROUNDING_TOL * abs(e):
            verdict = "rounding"
        else:
            return "wrong"
    return verdict


def _verdict(result: str | bool, name: str, hint: str) -> bool:
    if result is True or result == "ok":
        print(f"[{name}] correct!")
        return True
    if result == "rounding":
        print(
            f"[{name}] almost: right to {SIGNIFICANT_FIGURES - 1} significant figures, but "
            f"rounded. Keep at least {SIGNIFICANT_FIGURES} significant figures (or compute it "
            "in Python and keep the whole float)."
        )
        return False
    print(f"[{name}] not quite. Hint: {hint}")
    return False


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
    return _verdict(
        _compare(got.tolist(), expected.tolist(), atol=1e-6),
        name,
        "w_t = relax * m_ref / m_t + (1 - relax), with m = bal.stats.ema (the reference "
        "task's m over each task's m)",
    )


def check_multibalance_rule(
    rule_cls: type | None, *, num_tasks: int = 3, beta: float = 0.9, relax: float = 0.7
) -> bool:
    """Exercise 02: a MultiBalance :class:`~mbkernels.rules.Rule` written by the learner.

    ``rule_cls(num_tasks, beta=..., relax=..., target=0)`` must give, step after step, the
    weights of the library's ``MultiBalanceRule`` (reference "target", bias correction on)
    through a :class:`~mbkernels.Balancer` on the same Gram matrices (norms that drift and
    jump), and the same gradient on ``Z`` through the fork in one backward."""
    name = "your MultiBalance rule"
    if rule_cls is None:
        return _not_answered(name)
    kwargs = {"beta": beta, "relax": relax, "target": 0}
    try:
        mine = Balancer(rule_cls(num_tasks, **kwargs))
    except NotImplementedError:
        return _not_answered(name)
    except Exception as exc:
        return _verdict(False, name, f"building it raised {type(exc).__name__}: {exc}")
    ref = Balancer(MultiBalanceRule(num_tasks, reference="target", **kwargs))
    gen = torch.Generator().manual_seed(0)
    scales = torch.logspace(0, 2, num_tasks, dtype=torch.float64)  # 1 ... 100
    for step in range(1, 13):
        if step == 7:
            scales[-1] *= 10.0  # the last task's loss jumps
        g = scales[:, None] * (
            1 + 0.3 * torch.randn(num_tasks, 6, generator=gen, dtype=torch.float64)
        )
        gram = g @ g.T
        try:
            got = mine.step_weights(gram)
        except NotImplementedError:
            return _not_answered(name)
        except Exception as exc:
            return _verdict(False, name, f"step {step} raised {type(exc).__name__}: {exc}")
        expected = ref.step_weights(gram)
        if got.shape != expected.shape or not torch.allclose(
            got.double(), expected.double(), rtol=1e-5, atol=1e-7
        ):
            print(f"  step {step}: your weights {got.tolist()}")
            print(f"  step {step}: expected     {expected.tolist()}")
            if step == 1:
                hint = (
                    "n_t = sqrt(G_tt); the EMA starts at 0, so on step 1 m = (1 - beta) * n; "
                    "w_t = relax * m_ref / (m_t + eps) + (1 - relax) with m_ref the target's m "
                    "(divided by 1 - beta**step, which cancels in the ratio)"
                )
            else:
                hint = (
                    "step 1 was right, so look at the state: return the new EMA "
                    "beta * m + (1 - beta) * n in the state dict, and read the old one from "
                    "`state['ema']`"
                )
            return _verdict(False, name, hint)
    # the fork: one backward of a small model through each balancer, the same z.grad
    torch.manual_seed(0)
    x, towers = torch.randn(32, 5), [torch.nn.Linear(5, 1) for _ in range(num_tasks)]
    grads = []
    for bal in (mine, ref):
        z = x.clone().requires_grad_(True)
        losses = [float(s) * t(z_t).square().mean() for s, t, z_t in zip(scales, towers, bal(z))]
        sum(losses).backward()
        grads.append(z.grad)
    ok = bool(torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7))
    return _verdict(ok, name, "the weights were right but z.grad differs: return float weights")


def check_weighted_sum_kernel(my_weighted_sum: Callable[[Any, Any], Any] | None) -> bool:
    """Exercise 06: pass 2 written as a Triton kernel by the learner.

    ``my_weighted_sum(g, w)`` takes gradients stacked as ``g [T, N]`` and weights ``w [T]``
    (float32) and returns ``sum_t w[t] * g[t]`` in ``g``'s dtype. It is run on sizes that
    are not multiples of any block (N = 1, 129, 1000), T = 1, 3, 5 and float32 / float16
    gradients (plus bfloat16 compiled on a GPU), against a float64 reference."""
    name = "your weighted-sum kernel"
    from mbkernels.ops import triton_available

    if not triton_available():
        print(
            f"[{name}] Triton is not installed here (it exists for Linux only): read the "
            "solution, notebooks/solutions/06_inside_the_triton_kernel.py."
        )
        return False
    if my_weighted_sum is None:
        return _not_answered(name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if device == "cuda" else [])
    gen = torch.Generator().manual_seed(0)
    for dtype in dtypes:
        for t, n in ((1, 1), (3, 129), (5, 1000)):
            g = torch.randn(t, n, generator=gen).mul(torch.logspace(-1, 1, t)[:, None])
            w = torch.rand(t, generator=gen) + 0.1
            ref = (w.double()[:, None] * g.to(dtype).double()).sum(0)
            try:
                out = my_weighted_sum(g.to(device, dtype), w.to(device))
            except NotImplementedError:
                return _not_answered(name)
            except Exception as exc:
                return _verdict(
                    False, name, f"T={t}, N={n}, {dtype}: raised {type(exc).__name__}: {exc}"
                )
            if not isinstance(out, torch.Tensor) or out.shape != (n,) or out.dtype != dtype:
                got = (tuple(out.shape), out.dtype) if isinstance(out, torch.Tensor) else out
                return _verdict(False, name, f"return a [N] tensor of g's dtype, got {got}")
            if not bool(out.any()):  # the skeleton stores its zero accumulator
                return _not_answered(name)
            tol = 1e-5 if dtype == torch.float32 else 1e-2
            err = float((out.double().cpu() - ref).abs().max() / ref.abs().max())
            if err > tol:
                return _verdict(
                    False,
                    name,
                    f"T={t}, N={n}, {dtype}: relative error {err:.2g}. Loop over the T tasks: "
                    "load w[t] and this block of row t (offset t * N, masked), accumulate "
                    "w[t] * g in float32, store once",
                )
    return _verdict(True, name, "")


def check_cosine(answer: float | None, g1: Sequence[float], g2: Sequence[float]) -> bool:
    """Exercise 01: the cosine similarity of two task gradients."""
    name = "cosine similarity"
    if answer is None:
        return _not_answered(name)
    a = torch.as_tensor(g1, dtype=torch.float64).flatten()
    b = torch.as_tensor(g2, dtype=torch.float64).flatten()
    expected = float(a @ b / (a.norm() * b.norm()))
    ok = _compare([float(answer)], [expected], atol=1e-6)
    return _verdict(ok, name, "cos = <g1, g2> / (||g1|| ||g2||); it lies in [-1, 1]")


def check_mgda_endpoint(
    min_norm_weights: Callable[[Any], Any] | None,
    prediction: str | None,
    *,
    toy: Any,
    start: Sequence[float],
    steps: int,
    lr: float,
) -> bool:
    """Exercise 03: the learner's two-task min-norm weights, and a prediction of where
    MGDA-UB stops on the toy (``"c1"`` or ``"c2"``: nearer which task's minimiser).

    ``min_norm_weights(G)`` maps a ``[2, 2]`` Gram matrix (a numpy array) to ``(w1, w2)``.
    It must match the library's ``MGDAUB(2)`` on random, nearly parallel and opposite
    gradients; then the toy is stepped from ``start`` with it and must end where
    ``toy.trajectory("mgda_ub", ...)`` ends. The prediction is compared with that end point
    and explained, right or wrong; it does not change the verdict."""
    import numpy as np

    name = "MGDA-UB end point"
    if min_norm_weights is None:
        return _not_answered(name)
    rule = MGDAUB(2)
    gen = np.random.default_rng(0)
    cases = [gen.normal(size=(2, 3)) for _ in range(5)]
    cases += [np.array([[1.0, 0.0, 0.0], [0.99, 0.01, 0.0]]), np.array([[1.0, 0.2], [-3.0, 0.1]])]
    cases += [np.array([[0.1, 0.0], [10.0, 1.0]])]  # one gradient much shorter
    for g in cases:
        gram = g @ g.T
        try:
            got = np.asarray(min_norm_weights(gram), dtype=np.float64).reshape(-1)
        except NotImplementedError:
            return _not_answered(name)
        except Exception as exc:
            return _verdict(False, name, f"min_norm_weights raised {type(exc).__name__}: {exc}")
        want = rule.weights(torch.as_tensor(gram), {}, torch.tensor(1))[0].numpy()
        if got.shape != (2,) or not np.allclose(got, want, atol=1e-6):
            print(f"  G = {gram.round(4).tolist()}: yours {got.tolist()}, MGDA-UB {want.tolist()}")
            return _verdict(
                False,
                name,
                "minimise ||w g1 + (1 - w) g2||^2 = w^2 G11 + 2 w (1 - w) G12 + (1 - w)^2 G22 "
                "over w: set the derivative to zero, then clip w to [0, 1]",
            )
    x = np.asarray(start, dtype=np.float64).copy()
    for _ in range(steps):
        g = toy.grads(x)
        w = np.asarray(min_norm_weights(g @ g.T), dtype=np.float64).reshape(-1)
        x = x - lr * (w[0] * g[0] + w[1] * g[1])
    end = toy.trajectory("mgda_ub", start=start, steps=steps, lr=lr)[["x", "y"]].to_numpy()[-1]
    if not np.allclose(x, end, atol=1e-4):
        return _verdict(False, name, f"your path ends at {x.round(4)}, MGDA-UB's at {end.round(4)}")
    d = [float(np.linalg.norm(end - c)) for c in toy.centers]
    actual = "c1" if d[0] < d[1] else "c2"
    print(
        f"  MGDA-UB stops at ({end[0]:.3f}, {end[1]:.3f}): {d[0]:.2f} from c1, {d[1]:.2f} from "
        f"c2, so nearer {actual}; your path ends at the same point."
    )
    if prediction not in ("c1", "c2"):
        print('  Your prediction: not given (write "c1" or "c2" before running the cell).')
    else:
        right = prediction == actual
        print(f"  Your prediction {prediction!r} was {'right' if right else 'wrong'}.")
    print(
        "  Why: the min-norm combination leans toward the SHORTER gradient (the quiet task): "
        "it is the point of the segment [g1, g2] closest to 0. MGDA-UB stops at the first "
        "Pareto-stationary point it meets, while the plain sum follows the loud task."
    )
    return _verdict(True, name, "")


def check_ema_noise_factor(answer: float | None, *, beta: float) -> bool:
    """Exercise 04: by what factor an EMA with decay ``beta`` shrinks the standard deviation
    of independent, equally noisy measurements (in the long run):
    ``Var(m) = (1 - beta)^2 sum_k beta^(2k) Var(n) = (1 - beta) / (1 + beta) Var(n)``."""
    name = "EMA noise factor"
    if answer is None:
        return _not_answered(name)
    expected = ((1.0 - beta) / (1.0 + beta)) ** 0.5
    ok = _compare([float(answer)], [expected], atol=1e-6)
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
    """Exercise 05: Δm%, the mean relative change of each task's metric against a baseline
    (the notebook uses equal weighting), signed so that positive is better."""
    name = "Δm%"
    if answer is None:
        return _not_answered(name)
    terms = []
    for task, b in baseline.items():
        sign = 1.0 if higher_is_better[task] else -1.0
        terms.append(sign * (method[task] - b) / b)
    expected = 100.0 * sum(terms) / len(terms)
    ok = _compare([float(answer)], [expected], atol=1e-9)
    return _verdict(
        ok, name, "per task (M_method - M_baseline) / M_baseline, where the baseline is the "
        "one the exercise names (here: equal weighting), with the sign flipped where lower is "
        "better (RMSE), averaged over tasks, times 100"
    )  # fmt: skip


def check_sign_test(answer: float | None, *, differences: Sequence[float]) -> bool:
    """Exercise 08: the two-sided exact sign-test p-value of paired differences (zeros and
    missing values dropped): under "no difference" each seed favours either method with
    probability 1/2, so the count of positive differences is Binomial(n, 1/2)."""
    name = "sign-test p-value"
    if answer is None:
        return _not_answered(name)
    d = [float(x) for x in differences if x == x and float(x) != 0.0]
    n, k = len(d), sum(x > 0 for x in d)
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2.0**n
    expected = min(1.0, 2.0 * tail)
    ok = _compare([float(answer)], [expected], atol=1e-9)
    return _verdict(
        ok, name, "count the seeds where the method wins (k of n, ties dropped); p is twice "
        "the probability of a count at least as far from n/2 under Binomial(n, 1/2), at most 1"
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
    ok = _compare([float(answer)], [expected], atol=1e-9)
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
