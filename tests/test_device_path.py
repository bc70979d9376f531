"""The GPU device path (mbkernels._device): MultiBalance's step as Triton programs.

Through the interpreter on CPU (compiled on CUDA with MBK_TRITON_COMPILED=1). The
references are independent of the kernels: the tensor rule (``Balancer.step_weights``)
run on the Gram matrix the kernel recorded, ``gram_float64`` for pass 1, and the general
path's own handling of non-finite, out-of-range and failing steps.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mbkernels as mbk
from mbkernels.numerics import gram_float64
from mbkernels.ops import triton_ops, triton_rule
from mbkernels.rules import MultiBalanceRule

from .conftest import KERNEL_DEVICE, requires_triton

pytestmark = requires_triton
STATE = ("ema", "count", "step", "weights", "refused_streak")
#: the interpreter's bias correction is exp2(c * log2(beta)), a few ulp from pow
RULE_TOL = {"rtol": 1e-13, "atol": 0.0}


def balancer(t: int = 3, **kwargs) -> mbk.Balancer:
    rule_kw = {k: kwargs.pop(k) for k in ("reference", "bias_correction", "target") if k in kwargs}
    rule = MultiBalanceRule(t, **rule_kw)
    return mbk.Balancer(rule, backend="triton", **kwargs).to(KERNEL_DEVICE)


def task_grads(t: int, n: int = 1031, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    return [(torch.randn(n) * (i + 1) ** 2).to(KERNEL_DEVICE, dtype) for i in range(t)]


def snapshot(bal: mbk.Balancer) -> dict[str, torch.Tensor]:
    return {name: getattr(bal, name).clone() for name in STATE}


def assert_same_state(a: mbk.Balancer, b: mbk.Balancer, **tol) -> None:
    for name in STATE:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        torch.testing.assert_close(x, y, **(tol or {"rtol": 0.0, "atol": 0.0}), msg=name)


@pytest.mark.parametrize(
    "t, reference, bias_correction, dtype",
    [
        (2, "target", True, torch.float32),
        (3, "mean", False, torch.float32),
        (5, "max", True, torch.bfloat16),
        (8, "target", True, torch.float16),
        (12, "mean", True, torch.float32),  # beyond 8 tasks: the tl.dot pass 1
    ],
)
def test_the_kernel_runs_the_tensor_rule_on_the_gram_matrix_it_records(
    t: int, reference: str, bias_correction: bool, dtype: torch.dtype
) -> None:
    kw = {"reference": reference, "bias_correction": bias_correction, "target": t - 1}
    device_path, twin = balancer(t, **kw), balancer(t, **kw)
    for _ in range(3):
        gs = task_grads(t, dtype=dtype)
        out = device_path._combine(gs)
        assert device_path._device_record is not None  # the device path took the step
        stats = device_path.stats
        ref = gram_float64(gs)
        scale = ref.diagonal().max().item()
        torch.testing.assert_close(stats.gram, ref, rtol=1e-5, atol=1e-6 * scale)
        weights = twin.step_weights(stats.gram)  # the tensor rule, same state before
        assert_same_state(device_path, twin, **RULE_TOL)
        torch.testing.assert_close(stats.weights, weights, **RULE_TOL)
        torch.testing.assert_close(stats.norms, twin.stats.norms, **RULE_TOL)
        for name in ("step", "finite", "refused_streak"):
            assert torch.equal(getattr(stats, name), getattr(twin.stats, name)), name
        for name, value in stats.state.items():
            assert value.dtype == twin.stats.state[name].dtype
            torch.testing.assert_close(value, twin.stats.state[name], **RULE_TOL)
        # pass 2 with the record's weights: what the general path's pass 2 gives for them
        assert torch.equal(out, triton_ops.weighted_sum_triton(gs, device_path.weights))


def test_a_non_finite_step_is_refused_as_on_the_general_path() -> None:
    a, b = balancer(range_check=False), balancer(range_check=False)
    b._device_rule = False  # the general tensor path
    for g in (task_grads(3), task_grads(3)):
        a._combine(g), b._combine(g)
    before = snapshot(a)
    bad = task_grads(3)
    bad[1][5] = float("inf")
    out_a, out_b = a._combine(bad), b._combine(bad)
    assert a._device_record is not None
    assert torch.equal(out_a.isfinite(), out_b.isfinite())
    for name in ("ema", "count", "step", "weights"):
        assert torch.equal(getattr(a, name), before[name]), name
    assert int(a.refused_streak) == int(b.refused_streak) == 1
    assert not bool(a.stats.finite) and int(a.stats.refused_streak) == 1
    torch.testing.assert_close(a.stats.weights, before["weights"], rtol=0, atol=0)
    a._combine(task_grads(3))  # a finite step ends the streak
    assert int(a.refused_streak) == 0 and int(a.step) == int(before["step"]) + 1


@pytest.mark.parametrize(
    "t, dtype, scale, loss_scale",
    [
        (3, torch.float32, 1e-25, None),  # squares underflow float32
        (3, torch.float32, 1e25, None),  # squares overflow float32
        (3, torch.bfloat16, 1e-25, None),
        (3, torch.bfloat16, 1e25, None),
        (1, torch.float32, 1e-25, None),
        (12, torch.float32, 1e25, None),  # beyond 8 tasks: the tl.dot pass 1 first
        (3, torch.float32, 1e-25, 2.0**-10),  # with a GradScaler, divided out after
    ],
)
def test_an_out_of_range_step_is_recomputed_in_float64_on_the_device(
    t: int, dtype: torch.dtype, scale: float, loss_scale: float | None
) -> None:
    """The range flag is acted on by predicated launches, not read by the host: the step
    stays on the device path and agrees with the general path, whose range check
    recomputes the Gram matrix in float64 with PyTorch."""
    kw: dict = {}
    if loss_scale is not None:
        scaler = torch.amp.GradScaler(KERNEL_DEVICE.type, init_scale=loss_scale)
        scaler.scale(torch.ones((), device=KERNEL_DEVICE))  # creates the scale tensor
        kw["grad_scaler"] = scaler
    checked, reference = balancer(t, **kw), balancer(t, **kw)
    reference._device_rule = False
    layout = triton_rule.RecordLayout(t)
    for _ in range(3):
        gs = [(g.double() * scale).to(dtype) for g in task_grads(t)]
        out = checked._combine(gs)
        record = checked._device_record
        assert record is not None and float(record[layout.range_flag]) == 1.0
        ref_out = reference._combine(gs)
        exact = gram_float64(gs) / (loss_scale or 1.0) ** 2
        torch.testing.assert_close(checked.stats.gram, exact, rtol=1e-12, atol=0.0)
        assert_same_state(checked, reference, **RULE_TOL)
        assert torch.equal(out, triton_ops.weighted_sum_triton(gs, checked.weights))
        torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=0.0)
    # in range: the float64 launches change nothing, the flag stays clear
    gs = task_grads(t)
    before = snapshot(checked)
    checked._combine(gs)
    assert float(checked._device_record[layout.range_flag]) == 0.0
    twin = balancer(t, range_check=False, **kw)
    twin.load_state_dict({**checked.state_dict(), **before})
    twin._combine(gs)
    assert_same_state(checked, twin)


def test_a_non_finite_step_is_refused_with_the_range_check_too() -> None:
    """An inf in a gradient, with the range check on: the step is refused on the device
    path (the float32 Gram matrix and its float64 recomputation are both non-finite) and
    the state kept, as the general path does."""
    a, b = balancer(), balancer()
    b._device_rule = False
    for g in (task_grads(3), task_grads(3)):
        a._combine(g), b._combine(g)
    before_a, before_b = snapshot(a), snapshot(b)
    bad = task_grads(3)
    bad[2][7] = float("inf")
    a._combine(bad), b._combine(bad)
    assert a._device_record is not None and not bool(a.stats.finite)
    assert not bool(b.stats.finite)
    for bal, before in ((a, before_a), (b, before_b)):  # both keep their state
        for name in ("ema", "count", "step", "weights"):
            assert torch.equal(getattr(bal, name), before[name]), name
        assert int(bal.refused_streak) == 1


class _HostReads(TorchDispatchMode):
    """Counts the ops that copy a tensor's value into a Python number (``item()``,
    ``bool()``, ``int()``): on a GPU each is a synchronisation."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default):
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_default_step_reads_nothing_back_to_the_host(dtype: torch.dtype) -> None:
    """The default policy with the range check: no value goes from the device to the
    host during a step, in range or not (on CUDA: CUDA's sync debug mode raises on any
    synchronising call; on the CPU interpreter: no scalar read is dispatched, with the
    refused-step warning, a CPU read by design, off)."""
    cuda = KERNEL_DEVICE.type == "cuda"
    bal = balancer(**({} if cuda else {"warn_after_refused": None}))
    bal._combine(task_grads(3, dtype=dtype))  # compiles the kernels, caches parameters and tables
    for scale in (1.0, 1e-25, 1.0, float("inf")):
        gs = [(g.double() * scale).to(dtype) for g in task_grads(3)]
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                bal._combine(gs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        else:
            with _HostReads() as mode:
                bal._combine(gs)
            assert mode.reads == [], (scale, mode.reads)
        assert bal._device_record is not None
    assert int(bal.step) == 4 and int(bal.refused_streak) == 1  # the warm-up step, three more


def test_the_loss_scale_is_divided_out() -> None:
    scaler = torch.amp.GradScaler(KERNEL_DEVICE.type, init_scale=2.0**12)
    scaler.scale(torch.ones((), device=KERNEL_DEVICE))  # creates the scale tensor
    scaled, plain = balancer(grad_scaler=scaler), balancer()
    for _ in range(3):
        gs = task_grads(3)
        big = [g * 2.0**12 for g in gs]
        out = scaled._combine(big)
        plain._combine(gs)
        assert scaled._device_record is not None
        assert_same_state(scaled, plain)  # power-of-two scale: exact
        assert torch.equal(out, triton_ops.weighted_sum_triton(big, plain.weights))


def test_a_gram_reduction_runs_between_pass_one_and_the_rule() -> None:
    seen: list[torch.Tensor] = []

    def reduce(gram: torch.Tensor) -> torch.Tensor:
        seen.append(gram)
        return gram.double() * 4.0  # as two ranks' sum over R**2 would be for R = 1

    reduced, plain = balancer(gram_reduce=reduce), balancer()
    gs = task_grads(3)
    reduced._combine(gs)
    plain._combine(gs)
    assert reduced._device_record is not None and len(seen) == 1
    torch.testing.assert_close(reduced.stats.gram, 4.0 * seen[0].double(), rtol=0, atol=0)
    torch.testing.assert_close(reduced.stats.norms, 2.0 * plain.stats.norms, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "change",
    ["subclass", "raise", "skip_task", "missing_task", "torch_backend"],
)
def test_steps_the_device_path_leaves_to_the_general_path(change: str) -> None:
    class Mine(MultiBalanceRule):
        pass

    kw: dict = {}
    if change in ("raise", "skip_task"):
        kw["nonfinite"] = change
    if change == "torch_backend":
        bal = mbk.Balancer(MultiBalanceRule(3), backend="torch").to(KERNEL_DEVICE)
    elif change == "subclass":
        bal = mbk.Balancer(Mine(3), backend="triton").to(KERNEL_DEVICE)
    else:
        bal = balancer(**kw)
    gs: list = task_grads(3)
    if change == "missing_task":
        gs[1] = None
    assert bal._combine(gs) is not None
    assert bal._device_record is None
    assert int(bal.step) == 1


def test_an_error_before_the_commit_changes_nothing(monkeypatch) -> None:
    bal = balancer()
    bal._combine(task_grads(3))
    before = snapshot(bal)

    def broken(*args, **kwargs):
        raise RuntimeError("pass 2 failed")

    monkeypatch.setattr(triton_ops, "weighted_sum_into", broken)
    with pytest.raises(RuntimeError, match="pass 2 failed"):
        bal._combine(task_grads(3))
    for name in STATE:
        assert torch.equal(getattr(bal, name), before[name]), name


def test_stats_stay_a_record_of_their_step() -> None:
    bal = balancer()
    bal._combine(task_grads(3))
    first = bal.stats
    kept = {"weights": first.weights.clone(), "gram": first.gram.clone(), "step": first.step}
    bal._combine(task_grads(3))
    assert torch.equal(first.weights, kept["weights"]) and torch.equal(first.gram, kept["gram"])
    assert int(first.step) == 1 and int(bal.stats.step) == 2


def test_a_checkpoint_continues_on_the_general_path() -> None:
    bal = balancer()
    for _ in range(3):
        bal._combine(task_grads(3))
    general = balancer()
    general._device_rule = False
    general.load_state_dict(bal.state_dict())
    assert_same_state(general, bal)
    gs = task_grads(3)
    bal._combine(gs)
    general._combine(gs)
    assert_same_state(general, bal, rtol=1e-6, atol=0.0)  # float32 vs float64 partial sums
