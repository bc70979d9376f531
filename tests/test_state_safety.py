"""The balancer's state is safe: no error, device, dtype or checkpoint loses or corrupts it.

One test per way the state could be lost or silently frozen (the defects of issue 15),
then property tests (Hypothesis) for the classes: an exception anywhere inside
forward/backward/load leaves every state tensor bit-identical (values, dtype, device);
dtype conversions of the module keep the statistics in a safe dtype.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mbkernels as mbk

T, SHAPE = 3, (6, 4)
PROPERTY = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def snapshot(bal: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every state tensor, cloned (values, dtype and device are compared)."""
    return {k: v.clone() for k, v in bal.state_dict().items() if isinstance(v, torch.Tensor)}


def assert_unchanged(
    bal: torch.nn.Module, before: dict[str, torch.Tensor], *, refused: bool = False
) -> None:
    """Every state tensor as in ``before``; after a refused step (``refused=True``) all but
    the refusal counter, which went up by one."""
    after = snapshot(bal)
    assert after.keys() == before.keys()
    if refused:
        assert int(after.pop("refused_streak")) == int(before["refused_streak"]) + 1
    for key, value in before.items():
        if key not in after:
            continue
        got = after[key]
        assert got.dtype == value.dtype and got.device == value.device, key
        assert torch.equal(got, value), key


def backward(bal: mbk.Balancer, grads: list[torch.Tensor], device: str = "cpu") -> torch.Tensor:
    """Run the fork with task t receiving exactly ``grads[t]``; return dL/dz."""
    z = torch.zeros(grads[0].shape, dtype=grads[0].dtype, device=device, requires_grad=True)
    sum((o * g.to(device)).sum() for o, g in zip(bal(z), grads)).backward()
    assert z.grad is not None
    return z.grad


def grads(*scales: float, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    return [(s * torch.randn(SHAPE, dtype=torch.float64)).to(dtype) for s in scales]


# ---------------------------------------------------------------- 1. meta / fake tensors
def test_a_pass_on_the_meta_device_leaves_the_state_where_and_as_it_was() -> None:
    bal = mbk.MultiBalance(T)
    backward(bal, grads(1.0, 2.0, 3.0))
    before = snapshot(bal)
    z = torch.zeros(SHAPE, device="meta", requires_grad=True)
    sum((i + 1) * o.sum() for i, o in enumerate(bal(z))).backward()
    # the shape-only pass gives a shape-only gradient (the plain sum), for FLOP counters
    assert z.grad is not None and z.grad.device.type == "meta" and z.grad.shape == SHAPE
    assert_unchanged(bal, before)
    assert bal.stats is not None and int(bal.stats.step) == 1  # not a balancing step
    backward(bal, grads(1.0, 2.0, 3.0))  # and the next real step works
    assert int(bal.step) == 2 and bal.ema.device.type == "cpu"


def test_a_pass_under_fake_tensor_mode_leaves_the_state_untouched() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    bal = mbk.MultiBalance(T)
    backward(bal, grads(1.0, 2.0, 3.0))
    before = snapshot(bal)
    with FakeTensorMode():
        z = torch.zeros(SHAPE, requires_grad=True)
        sum((i + 1) * o.sum() for i, o in enumerate(bal(z))).backward()
        assert z.grad is not None and z.grad.shape == SHAPE
    assert_unchanged(bal, before)


def test_step_weights_refuses_a_gram_matrix_without_data() -> None:
    bal = mbk.MultiBalance(T)
    before = snapshot(bal)
    with pytest.raises(ValueError, match="gram must hold values.*'meta'"):
        bal.step_weights(torch.eye(T, device="meta"))
    assert_unchanged(bal, before)


@pytest.mark.parametrize("host_path", [True, False])
def test_an_error_in_pass_two_commits_nothing(monkeypatch, host_path: bool) -> None:
    """On the general tensor path and on the CPU host path (mbkernels._host)."""
    bal = mbk.MultiBalance(T)
    bal._host_rule = host_path
    backward(bal, grads(1.0, 2.0, 3.0))
    before = snapshot(bal)

    def broken(*args, **kwargs):
        raise RuntimeError("pass 2 failed")

    monkeypatch.setattr(mbk.ops, "weighted_sum", broken)
    monkeypatch.setattr(mbk._host, "pass2", broken)
    with pytest.raises(RuntimeError, match="pass 2 failed"):
        backward(bal, grads(1.0, 2.0, 3.0))
    assert_unchanged(bal, before)


# ------------------------------------------------------- 3. dtype changes of the module
def test_half_model_keeps_float32_statistics_and_keeps_balancing() -> None:
    """An EMA above float16's 65504 must not freeze a balancer whose model went .half()."""
    model = torch.nn.Module()
    model.balancer = mbk.MultiBalance(T, beta=0.5)
    model.half()
    bal = model.balancer
    assert bal.ema.dtype == torch.float32 and bal.step.dtype == torch.int64
    for step in range(1, 4):
        backward(bal, grads(1e6, 1e5, 1.0, dtype=torch.float32))
        assert bool(bal.stats.finite) and int(bal.step) == step
    assert bal.ema[0] > 65504 and torch.isfinite(bal.ema).all()


#: name -> (conversion, the dtype it gives the model's parameters)
CONVERSIONS = {
    "half": (lambda m: m.half(), torch.float16),
    "bfloat16": (lambda m: m.bfloat16(), torch.bfloat16),
    "double": (lambda m: m.double(), torch.float64),
    "float": (lambda m: m.float(), torch.float32),
    "to(float16)": (lambda m: m.to(torch.float16), torch.float16),
    "to(cpu, float64)": (lambda m: m.to("cpu", torch.float64), torch.float64),
    "to(dtype=bfloat16)": (lambda m: m.to(dtype=torch.bfloat16), torch.bfloat16),
    "type(float16)": (lambda m: m.type(torch.float16), torch.float16),
}


@PROPERTY
@given(
    names=st.lists(st.sampled_from(sorted(CONVERSIONS)), min_size=1, max_size=4),
    rule=st.sampled_from(sorted(mbk.RULES)),
)
def test_dtype_conversions_never_touch_the_statistics(names: list[str], rule: str) -> None:
    model = torch.nn.Module()
    model.lin = torch.nn.Linear(2, 2)
    model.balancer = mbk.Balancer(mbk.make_rule(rule, T))
    backward(model.balancer, grads(1e3, 1.0, 1e-3))
    before = snapshot(model.balancer)
    for name in names:
        CONVERSIONS[name][0](model)
    assert model.lin.weight.dtype == CONVERSIONS[names[-1]][1]  # the model did convert
    assert_unchanged(model.balancer, before)  # the statistics did not: values and dtypes


# ------------------------------------------------ 7. weights beyond float32's range
def test_float64_training_with_a_norm_ratio_above_1e38_keeps_balancing() -> None:
    """MultiBalance weights near 1e40 are finite float64 numbers: committed and applied
    (stored in float32 they would be inf, and every step refused)."""
    from .helpers import multibalance_reference

    bal = mbk.MultiBalance(2, beta=0.9, relax=0.7, reference="target", target=0)
    ema = torch.zeros(2, dtype=torch.float64)
    for step in (1, 2, 3):
        gs = grads(1e35, 1e-5, dtype=torch.float64)  # eps = 1e-8 is negligible
        out = backward(bal, gs)
        expect, ema, w = multibalance_reference(
            gs, ema, step, beta=0.9, relax=0.7, reference="target", target=0
        )
        assert bool(bal.stats.finite) and int(bal.step) == step
        assert w[1] > 1e39 and torch.isfinite(bal.weights).all()
        # the EMA is float32 state: weights to float32's relative accuracy
        torch.testing.assert_close(bal.weights, w, rtol=1e-6, atol=0)
        torch.testing.assert_close(out, expect, rtol=1e-6, atol=1e-6 * expect.abs().max())


def test_pcgrad_in_float64_applies_projections_beyond_float32s_range() -> None:
    """A large gradient conflicting with a tiny one: the projection coefficient is ~1e40.
    It is applied (in float32 it would be inf, the step refused, and the last weights,
    the plain sum's, applied instead)."""
    from . import _rules_reference as ref

    m = torch.tensor([[1e20, 1e20, 0.0], [-1e-20, 0.0, 1e-20]], dtype=torch.float64)
    bal = mbk.Balancer(mbk.PCGrad(2, seed=0))
    out = backward(bal, [row.reshape(1, 3) for row in m])
    assert bool(bal.stats.finite) and int(bal.step) == 1
    assert bal.weights.abs().max() > 1e39
    expect = torch.from_numpy(ref.pcgrad(m.numpy(), seed=0, step=1)).reshape(1, 3)
    torch.testing.assert_close(out, expect, rtol=1e-12, atol=1e-12 * expect.abs().max())
    assert not torch.allclose(out, m.sum(0).reshape(1, 3))  # not the plain sum


def test_float32_gradients_with_weights_beyond_float32s_range_on_cpu() -> None:
    """Pass 2 applies a weight above float32's maximum as an exact power of two times a
    representable one: the combined gradient is finite and right, not inf or NaN."""
    bal = mbk.MultiBalance(2, beta=0.0, relax=1.0, reference="target", target=0)
    gs = grads(1e35, 1e-5, dtype=torch.float32)  # squares overflow: float64 Gram
    gs[1][0, 0] = 0.0  # 0 * inf would be NaN
    out = backward(bal, gs)
    assert bal.weights[1] > torch.finfo(torch.float32).max and bool(bal.stats.finite)
    w = bal.weights
    expect = w[0] * gs[0].double() + w[1] * gs[1].double()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expect, rtol=1e-5, atol=1e-5 * expect.abs().max())


def test_non_finite_rule_output_from_finite_gradients_is_refused_not_applied() -> None:
    class Broken(mbk.MultiBalanceRule):
        factor = 1.0

        def weights(self, gram, state, step):  # type: ignore[no-untyped-def]
            w, new = super().weights(gram, state, step)
            return w * self.factor, new

    rule = Broken(T)
    bal = mbk.Balancer(rule)
    backward(bal, grads(1.0, 2.0, 3.0, dtype=torch.float64))
    rule.factor = 1e300  # finite in float64: applied
    backward(bal, grads(1.0, 2.0, 3.0, dtype=torch.float64))
    assert bool(bal.stats.finite) and int(bal.step) == 2
    rule.factor = float("inf")  # not finite: refused, the last weights applied
    before = snapshot(bal)
    gs = grads(1.0, 2.0, 3.0, dtype=torch.float64)
    out = backward(bal, gs)
    assert not bool(bal.stats.finite)
    assert_unchanged(bal, before, refused=True)
    w = bal.weights
    torch.testing.assert_close(out, sum(w[t] * gs[t] for t in range(T)), rtol=1e-12, atol=0)


# ------------------------------------------------------ 2. overflow with a GradScaler
@pytest.mark.parametrize("policy", mbk.NONFINITE_POLICIES)
def test_an_overflow_with_a_grad_scaler_is_the_scalers_whatever_the_policy(policy: str) -> None:
    """float16 z, scale 2^16, task 1's scaled gradient overflows: the whole step is
    skipped, so the scaler backs off until task 1 fits and trains. (Dropping task 1 under
    ``"skip_task"`` would leave a finite rest: the scale would never shrink, and task 1
    would never train.)"""
    torch.manual_seed(0)
    bottom = torch.nn.Linear(6, 4)
    towers = torch.nn.ModuleList(torch.nn.Linear(4, 1) for _ in range(2))
    params = [*bottom.parameters(), *towers.parameters()]
    opt = torch.optim.SGD(params, lr=1e-4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=10**6)
    bal = mbk.MultiBalance(2, nonfinite=policy, grad_scaler=scaler)
    tower1 = towers[1].weight.detach().clone()
    x, y = torch.randn(16, 6), torch.randn(16, 2)
    skipped = 0
    for _ in range(20):
        opt.zero_grad()
        zs = bal(bottom(x).half())
        losses = [
            (t(z.float()).squeeze(-1) - y[:, i]).pow(2).mean()
            for i, (t, z) in enumerate(zip(towers, zs))
        ]
        step_before = int(bal.step)
        scaler.scale(losses[0] + 1e3 * losses[1]).backward()
        if not bool(bal.stats.finite):
            skipped += 1
            assert int(bal.step) == step_before  # the balancer skipped the step too
        scaler.step(opt)
        scaler.update()
    assert skipped >= 1 and scaler.get_scale() < 2.0**16  # the scaler saw it and backed off
    assert int(bal.step) == 20 - skipped and bool(bal.stats.finite)
    assert bal.weights[1] > 0 and not torch.equal(towers[1].weight, tower1)  # task 1 trains


# ------------------------------------------------------------- refused steps are loud
def _nan_in(task: int, *scales: float) -> list[torch.Tensor]:
    gs = grads(*scales)
    gs[task][0, 0] = float("nan")
    return gs


@pytest.mark.parametrize("policy", ["skip_update", "skip_task"])
def test_a_streak_of_refused_steps_is_counted_and_warned_once(policy: str) -> None:
    import warnings

    bal = mbk.MultiBalance(T, nonfinite=policy, warn_after_refused=4)
    backward(bal, grads(1.0, 2.0, 3.0))
    assert int(bal.refused_streak) == 0 and int(bal.stats.refused_streak) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(1, 9):
            backward(bal, _nan_in(1, 1.0, 2.0, 3.0))
            assert int(bal.stats.refused_streak) == k == int(bal.refused_streak)
    refused = [w for w in caught if issubclass(w.category, mbk.RefusedStepsWarning)]
    assert len(refused) == 1  # once per streak
    message = str(refused[0].message)
    assert "4 balancing steps in a row were refused" in message
    assert "task index(es) [1]" in message
    if policy == "skip_task":
        assert "skip_task" in message and int(bal.step) == 9  # the others did train
    else:
        assert int(bal.step) == 1
    # an accepted step ends the streak; the next streak warns again
    backward(bal, grads(1.0, 2.0, 3.0))
    assert int(bal.stats.refused_streak) == 0
    with pytest.warns(mbk.RefusedStepsWarning, match="4 balancing steps"):
        for _ in range(4):
            backward(bal, _nan_in(2, 1.0, 2.0, 3.0))


def test_the_warning_names_a_non_finite_rule_output() -> None:
    class Broken(mbk.MultiBalanceRule):
        def weights(self, gram, state, step):  # type: ignore[no-untyped-def]
            w, new = super().weights(gram, state, step)
            return w * float("inf"), new

    bal = mbk.Balancer(Broken(T), warn_after_refused=2)
    with pytest.warns(mbk.RefusedStepsWarning, match="rule's weights or state were not finite"):
        for _ in range(2):
            backward(bal, grads(1.0, 2.0, 3.0))
    assert int(bal.step) == 0 and int(bal.refused_streak) == 2


def test_the_warning_explains_a_grad_scaler_streak() -> None:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    bal = mbk.MultiBalance(2, grad_scaler=scaler, warn_after_refused=3)
    z = torch.zeros(SHAPE, requires_grad=True)
    with pytest.warns(mbk.RefusedStepsWarning, match=r"task index\(es\) \[0\].*GradScaler"):
        for _ in range(3):
            a, b = bal(z)
            scaler.scale((a * float("nan")).sum() + b.sum()).backward()


def test_no_warning_when_switched_off_and_the_threshold_is_validated() -> None:
    import warnings

    bal = mbk.MultiBalance(T, warn_after_refused=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(30):
            backward(bal, _nan_in(0, 1.0, 2.0, 3.0))
    assert int(bal.refused_streak) == 30  # still counted
    for bad in (0, -1, 2.5, True):
        with pytest.raises(
            ValueError, match=r"warn_after_refused must be an integer in \[1, inf\)"
        ):
            mbk.MultiBalance(T, warn_after_refused=bad)
    bal.reset()
    assert int(bal.refused_streak) == 0


# ------------------------------------------------------ 4-6. checkpoints that do not fit
def _trained(rule: str = "multibalance", steps: int = 2, **kwargs) -> mbk.Balancer:
    bal = mbk.Balancer(mbk.make_rule(rule, T, **kwargs))
    for _ in range(steps):
        backward(bal, grads(1.0, 10.0, 100.0))
    return bal


def test_a_checkpoint_with_a_missing_entry_is_refused_before_anything_is_copied() -> None:
    bal = _trained(steps=2)
    sd = _trained(steps=5).state_dict()
    del sd["ema"]
    before = snapshot(bal)
    with pytest.raises(ValueError, match=r"no entry 'ema'.*nothing was loaded"):
        bal.load_state_dict(sd)
    assert_unchanged(bal, before)  # step and weights were not overwritten either
    # with the balancer as a submodule: torch's own loader (the balancer refuses before
    # copying itself) and the model-level one (which validates before copying anything)
    model = torch.nn.Module()
    model.lin = torch.nn.Linear(2, 2)
    model.balancer = bal
    full = {f"lin.{k}": v + 1 for k, v in model.lin.state_dict().items()}
    full.update({f"balancer.{k}": v for k, v in sd.items()})
    lin_before = {k: v.clone() for k, v in model.lin.state_dict().items()}
    with pytest.raises(ValueError, match=r"no entry 'balancer.ema'"):
        mbk.load_state_dict(model, full)
    assert_unchanged(bal, before)
    for k, v in model.lin.state_dict().items():
        assert torch.equal(v, lin_before[k]), k  # validated before anything was copied
    with pytest.raises(ValueError, match=r"no entry 'balancer.ema'"):
        model.load_state_dict(full)
    assert_unchanged(bal, before)


def test_a_checkpoint_with_another_configuration_is_refused_naming_the_fields() -> None:
    bal = mbk.MultiBalance(T, beta=0.95, relax=0.5)
    sd = mbk.MultiBalance(T, beta=0.9, relax=0.5).state_dict()
    before = snapshot(bal)
    with pytest.raises(ValueError, match=r"beta: saved 0\.9, this balancer 0\.95") as info:
        bal.load_state_dict(sd)
    assert "relax" not in str(info.value)  # only the fields that differ
    assert_unchanged(bal, before)
    assert bal.rule.beta == 0.95
    # changing a hyperparameter on resume is possible, on purpose
    sd["_extra_state"]["config"]["beta"] = 0.95
    bal.load_state_dict(sd)


@pytest.mark.parametrize(("key", "value"), [("step", -1), ("refused_streak", -3)])
def test_negative_counters_are_refused(key: str, value: int) -> None:
    bal = _trained()
    sd = bal.state_dict()
    sd[key] = torch.tensor(value)
    before = snapshot(bal)
    with pytest.raises(ValueError, match=rf"'{key}' must be in \[0, inf\), got {value}"):
        bal.load_state_dict(sd)
    assert_unchanged(bal, before)


def _corruptions(bal: mbk.Balancer) -> list[tuple[str, object, str]]:
    """(key, new value or _DELETE, text the error must contain) for a balancer's state dict."""
    sd = bal.state_dict()
    tensors = [k for k, v in sd.items() if isinstance(v, torch.Tensor)]
    out: list[tuple[str, object, str]] = [("bogus", torch.zeros(1), "'bogus'")]
    for key in tensors:
        v = sd[key]
        out.append((key, _DELETE, f"'{key}'"))
        out.append((key, torch.zeros(v.numel() + 1), f"'{key}' has shape"))
        out.append((key, torch.zeros(v.shape, dtype=torch.bool), f"'{key}' must have"))
        if v.is_floating_point():
            out.append((key, torch.full(v.shape, float("nan")), f"'{key}' must be finite"))
            if v.dtype == torch.float32:  # overflows the buffer's dtype
                out.append((key, torch.full(v.shape, 1e300, dtype=torch.float64), f"'{key}'"))
            out.append((key, torch.zeros(v.shape, dtype=torch.int64), f"'{key}' must have"))
        else:
            out.append((key, torch.full(v.shape, -1), f"'{key}' must be in [0, inf)"))
            out.append((key, torch.zeros(v.shape), f"'{key}' must have"))
        out.append((key, torch.zeros(v.shape, device="meta"), f"'{key}'"))
    if "ema" in sd:
        out.append(("ema", -torch.ones(T), "'ema' must be in [0, inf)"))
    out.append(("_extra_state", _DELETE, "'_extra_state'"))
    out.append(("_extra_state", [1, 2], "'_extra_state' must be a mapping"))
    extra = sd["_extra_state"]
    out.append(("_extra_state", {**extra, "rule": "other"}, "rule 'other'"))
    for field, value in extra["config"].items():
        if field == "num_tasks":
            new: object = value + 1
        elif isinstance(value, bool):
            new = not value
        elif isinstance(value, float):
            new = value / 2
        elif isinstance(value, int):
            new = (value + 1) % T
        elif isinstance(value, list):
            new = [x + 1 for x in value]
        else:
            new = "mean" if value != "mean" else "max"
        config = {**extra["config"], field: new}
        out.append(("_extra_state", {**extra, "config": config}, field))
    return out


_DELETE = object()
STATEFUL_AND_CONFIGURED = ["multibalance", "max_norm", "pcgrad", "linear", "cagrad", "mgda_ub"]


@pytest.mark.parametrize("rule", STATEFUL_AND_CONFIGURED)
def test_every_corrupted_checkpoint_is_refused_naming_the_field(rule: str) -> None:
    """Missing key, extra key, wrong shape, wrong kind of dtype, a negative counter, a
    non-finite or negative EMA, data-less tensors, another rule or configuration: each
    refused with an error naming the field, and nothing changes. Every variant of every
    entry is tried (an enumeration, so none is left to chance)."""
    bal = _trained(rule, steps=2)
    source = _trained(rule, steps=4)
    before = snapshot(bal)
    config = bal.rule.config()
    for key, value, expected in _corruptions(source):
        sd = source.state_dict()
        if value is _DELETE:
            del sd[key]
        else:
            sd[key] = value
        with pytest.raises(ValueError) as info:
            bal.load_state_dict(sd)
        assert expected in str(info.value), (key, value, str(info.value))
        assert_unchanged(bal, before)
        assert bal.rule.config() == config
    bal.load_state_dict(source.state_dict())  # the intact one loads and round-trips
    assert_unchanged(bal, snapshot(source))


def test_model_level_loader_checks_every_module_before_copying() -> None:
    model = torch.nn.Module()
    model.lin = torch.nn.Linear(2, 2)
    model.balancer = _trained()
    other = torch.nn.Module()
    other.lin = torch.nn.Linear(2, 3)  # another shape
    other.balancer = _trained(steps=5)
    before = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    with pytest.raises(ValueError, match=r"'lin.weight' has shape \(3, 2\).*\(2, 2\)"):
        mbk.load_state_dict(model, other.state_dict())
    sd = model.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.weight'\]"):
        mbk.load_state_dict(model, sd)
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    # strict=False: a checkpoint without the balancer loads the rest, the balancer keeps its
    # state (as PyTorch does for missing keys)
    partial = {k: v + 1 for k, v in model.lin.state_dict().items()}
    mbk.load_state_dict(model, {f"lin.{k}": v for k, v in partial.items()}, strict=False)
    assert torch.equal(model.lin.weight, partial["weight"])
    assert torch.equal(model.balancer.ema, before["balancer.ema"])


# ------------------------------- any exception in forward/backward/load changes nothing
def _raise(*args, **kwargs):
    raise RuntimeError("injected failure")


FAILURES = ("forward_int", "pass1", "reduce", "rule", "pass2", "raise_policy", "backend", "load")


@PROPERTY
@given(
    failure=st.sampled_from(FAILURES),
    rule=st.sampled_from(sorted(mbk.RULES)),
    warmup=st.integers(0, 3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    policy=st.sampled_from(list(mbk.NONFINITE_POLICIES)),
)
def test_an_exception_anywhere_leaves_every_state_tensor_bit_identical(
    failure: str, rule: str, warmup: int, dtype: torch.dtype, policy: str
) -> None:
    from unittest import mock

    reduce_calls = {"fail": False}

    def gram_reduce(g: torch.Tensor) -> torch.Tensor:
        if reduce_calls["fail"]:
            raise RuntimeError("injected failure")
        return g

    backend = "triton" if failure == "backend" else "torch"
    bal = mbk.Balancer(mbk.make_rule(rule, T), nonfinite=policy, gram_reduce=gram_reduce)
    for _ in range(warmup):
        backward(bal, grads(1.0, 10.0, 100.0, dtype=dtype))
    before = snapshot(bal)
    gs = grads(1.0, 10.0, 100.0, dtype=dtype)
    with pytest.raises((RuntimeError, ValueError, FloatingPointError)):
        if failure == "forward_int":
            bal(torch.ones(SHAPE, dtype=torch.int64))
        elif failure == "pass1":
            with (
                mock.patch.object(mbk.ops, "gram", _raise),
                mock.patch.object(mbk.ops, "sq_norms", _raise),
            ):
                backward(bal, gs)
        elif failure == "reduce":
            reduce_calls["fail"] = True
            backward(bal, gs)
        elif failure == "rule":
            with (
                mock.patch.object(bal.rule, "weights", _raise),
                mock.patch.object(bal.rule, "weights_subset", _raise),
            ):
                backward(bal, gs)
        elif failure == "pass2":
            with mock.patch.object(mbk.ops, "weighted_sum", _raise):
                backward(bal, gs)
        elif failure == "raise_policy":
            gs[1][0, 0] = float("inf")
            if policy != "raise":
                raise RuntimeError("only 'raise' raises here")  # nothing to test
            backward(bal, gs)
        elif failure == "backend":  # float64 is not a Triton dtype; float32 on CPU raises
            bal.backend = backend  # without the interpreter; either way an error
            if dtype == torch.float32:
                raise RuntimeError("interpreter runs float32; covered by float64 draws")
            backward(bal, gs)
        else:  # load a state dict with one broken entry
            sd = bal.state_dict()
            sd["step"] = torch.tensor(-5)
            bal.load_state_dict(sd)
    assert_unchanged(bal, before)


# ------------------- skip_task: a held EMA keeps the bias correction of its own updates
def test_a_long_dropped_reference_task_keeps_its_magnitude() -> None:
    """The target task is dropped from step 2 on: its held EMA is corrected for its one
    update, so the reference magnitude stays its real gradient norm (corrected with the
    global step it would shrink towards (1 - beta) times it, the other weights with it)."""
    beta = 0.9
    bal = mbk.MultiBalance(T, beta=beta, relax=1.0, nonfinite="skip_task", warn_after_refused=None)
    first = grads(4.0, 1.0, 1.0)
    backward(bal, first)
    n0 = float(first[0].double().norm())
    for _ in range(2, 40):
        gs = grads(4.0, 1.0, 1.0)
        gs[0][0, 0] = float("nan")
        backward(bal, gs)
    assert bal.count.tolist() == [1, 39, 39]
    # reference magnitude = task 0's corrected EMA = its step-1 norm, exactly as at step 1
    m = bal.ema.double() / (1 - beta ** bal.count.double())
    torch.testing.assert_close(m[0], torch.tensor(n0, dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(bal.weights[1:], n0 / (m[1:] + 1e-8), rtol=1e-6, atol=0)


# --------------------------------------------------- a state dict round-trips exactly
ROUND_TRIP_RULES = {
    "multibalance": {"beta": 0.8, "relax": 0.5, "reference": "max"},
    "max_norm": {"beta": 0.7},
    "pcgrad": {"seed": 11},
    "linear": {"preferences": [1.0, 0.5, 2.0]},
    "mgda_ub": {},
    "imtl_g": {},
    "cagrad": {"c": 0.3},
    "aligned_mtl": {"rtol": 1e-9},
    "equal": {},
}


@PROPERTY
@given(
    rule=st.sampled_from(sorted(ROUND_TRIP_RULES)),
    before=st.integers(0, 4),
    after=st.integers(1, 3),
    nan_task=st.sampled_from([None, 0, 2]),
)
def test_a_state_dict_round_trips_config_and_state(rule, before, after, nan_task) -> None:
    """Save after a few steps (some refused), load into a fresh balancer built with the
    same configuration (through torch.save / weights_only=True: plain Python config),
    continue: the same weights, state and gradients, bit for bit, as without the break."""
    import io

    kwargs = ROUND_TRIP_RULES[rule]
    torch.manual_seed(1)
    batches = [grads(1.0, 10.0, 100.0) for _ in range(before + after)]
    if nan_task is not None and before:
        batches[before - 1][nan_task][0, 0] = float("nan")
    policy = "skip_task"
    original = mbk.Balancer(mbk.make_rule(rule, T, **kwargs), nonfinite=policy)
    for gs in batches[:before]:
        backward(original, gs)
    buf = io.BytesIO()
    torch.save(original.state_dict(), buf)
    resumed = mbk.Balancer(mbk.make_rule(rule, T, **kwargs), nonfinite=policy)
    resumed.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert_unchanged(resumed, snapshot(original))
    for gs in batches[before:]:
        assert torch.equal(backward(original, gs), backward(resumed, gs))
    assert_unchanged(resumed, snapshot(original))


def test_max_norm_under_skip_task_uses_the_held_magnitude_with_its_own_correction() -> None:
    """MaxNorm scales every task to the largest bias-corrected EMA; a task held under
    skip_task takes part in that max with its held EMA, corrected for its own updates."""
    beta = 0.5
    bal = mbk.Balancer(mbk.MaxNorm(T, beta=beta), nonfinite="skip_task", warn_after_refused=None)
    first = grads(8.0, 1.0, 1.0)
    backward(bal, first)
    n0 = float(first[0].double().norm())
    for _ in range(6):
        gs = grads(8.0, 1.0, 1.0)
        gs[0][0, 0] = float("inf")
        out = backward(bal, gs)
    assert bal.count.tolist() == [1, 7, 7] and bal.weights[0] == 0
    norms = torch.stack([g.double().norm() for g in gs])
    mhat = bal.ema.double() / (1 - beta ** bal.count.double())
    torch.testing.assert_close(mhat[0], torch.tensor(n0, dtype=torch.float64), rtol=1e-6, atol=0)
    scale = mhat.max()  # task 0's held magnitude is the largest
    torch.testing.assert_close(scale, mhat[0])
    torch.testing.assert_close(bal.weights[1:], scale / (norms[1:] + 1e-8), rtol=1e-6, atol=0)
    expect = sum(bal.weights[t] * gs[t].double() for t in (1, 2))
    torch.testing.assert_close(out.double(), expect, rtol=1e-5, atol=1e-6)
