"""Loss-aware weightings: bad input (missing, miscounted or non-finite losses, invalid
hyperparameters, hooks on the wrong rule) raises a ValueError naming what to fix and
changes nothing; the state (learned parameters, FAMO's Adam moments, DWA's epochs)
round-trips through the state dict exactly; the fast-path switch and the skip_task
policy keep their meaning."""

from __future__ import annotations

import copy
import io
import math
import re
import warnings

import pytest
import torch

import mbkernels as mbk

from .helpers import ToyMultiTask

T = 3

#: Every weighting with hyperparameters that make its state move within a few steps.
KWARGS: dict[str, dict] = {
    "uw": {},
    "imtl_l": {},
    "dwa": {"temperature": 1.0},
    "gls": {},
    "geometric_mean": {},
    "stch": {"mu": 0.5, "warmup": 2},
    "famo": {},
    "gradnorm": {"alpha": 1.5, "lr": 0.1},
    "log": {},
}


def test_every_weighting_is_registered_and_tested_here() -> None:
    assert set(KWARGS) == set(mbk.WEIGHTINGS)
    for name in KWARGS:
        rule = mbk.make_rule(name, T)
        assert isinstance(rule, mbk.LossWeighting) and rule.name == name
        # the saved configuration rebuilds the same weighting
        assert mbk.make_rule(name, **rule.config()).config() == rule.config()


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(300 + step)
    return torch.randn(10, 6, generator=gen), torch.randn(10, T, generator=gen)


def _step(model: ToyMultiTask, bal: mbk.Balancer, opt: torch.optim.Optimizer, k: int):
    x, y = _batch(k)
    opt.zero_grad()
    z = model.bottom(x)
    z.retain_grad()
    losses = model.task_losses(bal(z), y)
    aux = bal.observe(losses)
    (sum(losses) + aux).backward()
    opt.step()
    if bal.rule.name == "famo":
        with torch.no_grad():
            bal.update(model.task_losses([model.bottom(x)] * T, y))
    if bal.rule.name == "dwa" and k % 2 == 1:
        bal.end_epoch()
    return z.grad


def _setup(name: str) -> tuple[ToyMultiTask, mbk.Balancer, torch.optim.Optimizer]:
    torch.manual_seed(2)
    model = ToyMultiTask(T)
    bal = mbk.Balancer(mbk.make_rule(name, T, **KWARGS[name]))
    opt = torch.optim.Adam([*model.parameters(), *bal.parameters()], lr=0.01)
    return model, bal, opt


def _snapshot(bal: mbk.Balancer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in bal.state_dict().items() if isinstance(v, torch.Tensor)}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_checkpoint_round_trip_continues_bit_identically(name: str) -> None:
    model, bal, opt = _setup(name)
    for k in range(5):
        _step(model, bal, opt, k)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "bal": bal.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2, bal2, opt2 = _setup(name)
    model2.load_state_dict(saved["model"])
    bal2.load_state_dict(saved["bal"])
    opt2.load_state_dict(saved["opt"])
    _assert_same(_snapshot(bal2), _snapshot(bal))
    for k in range(5, 9):
        g1 = _step(model, bal, opt, k)
        g2 = _step(model2, bal2, opt2, k)
        assert torch.equal(g1, g2)
    _assert_same(_snapshot(bal2), _snapshot(bal))
    # the state did move (a round trip of an unchanged state would prove little)
    fresh = _setup(name)[1]
    moved = [k for k, v in _snapshot(bal).items() if not torch.equal(v, _snapshot(fresh)[k])]
    assert set(moved) - {"step", "weights"} or name in {"gls", "geometric_mean", "log"}


def test_learned_parameters_are_in_the_state_dict_and_parameters() -> None:
    bal = mbk.Balancer(mbk.make_rule("uw", T))
    assert [n for n, _ in bal.named_parameters()] == ["log_var"]
    assert "log_var" in bal.state_dict()
    sd = bal.state_dict()
    del sd["log_var"]
    with pytest.raises(ValueError, match="no entry 'log_var'"):
        bal.load_state_dict(sd)
    sd = bal.state_dict()
    sd["log_var"] = torch.tensor([0.0, float("nan"), 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="'log_var' must be finite"):
        bal.load_state_dict(sd)
    assert torch.equal(bal.log_var.detach(), torch.zeros(T, dtype=torch.float64))


def _losses_of(model: ToyMultiTask, bal: mbk.Balancer, k: int = 0):
    x, y = _batch(k)
    return model.task_losses(bal(model.bottom(x)), y)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_backward_without_observed_losses_names_observe_and_changes_nothing(name: str) -> None:
    model, bal, opt = _setup(name)
    _step(model, bal, opt, 0)
    before = _snapshot(bal)
    grads = {n: p.grad.clone() for n, p in bal.named_parameters()}
    losses = _losses_of(model, bal)
    with pytest.raises(ValueError, match=r"call bal\.observe\(losses\)"):
        sum(losses).backward()
    _assert_same(_snapshot(bal), before)
    for n, p in bal.named_parameters():
        assert torch.equal(p.grad, grads[n])
    # observed losses are used once: a second backward needs them again
    losses = _losses_of(model, bal, 1)
    bal.observe(losses)
    sum(losses).backward(retain_graph=True)
    with pytest.raises(ValueError, match="no losses were observed"):
        sum(losses).backward()


@pytest.mark.parametrize(
    ("losses", "match"),
    [
        ([1.0, 2.0], r"losses must hold num_tasks=3 losses, one per task, got 2"),
        (torch.ones(2, 2), r"losses must be a \[3\] tensor .* shape \(2, 2\)"),
        ([torch.ones(2), 1.0, 1.0], r"losses\[0\] must be a scalar"),
        ([1.0, float("nan"), 2.0], r"losses must be finite.*task index\(es\) \[1\]"),
        (torch.tensor([1.0, 2.0, math.inf]), r"losses must be finite.*\[2\]"),
        ("abc", "losses must be a"),
        ([1.0, "x", 2.0], r"losses\[1\] must be a tensor or a number"),
    ],
)
def test_bad_losses_are_refused_and_change_nothing(losses, match: str) -> None:
    model, bal, opt = _setup("uw")
    _step(model, bal, opt, 0)
    before = _snapshot(bal)
    opt.zero_grad()
    aux = bal.observe([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=match):
        bal.observe(losses)
    _assert_same(_snapshot(bal), before)
    # the losses observed before are still the ones the step uses
    _backward_units(bal, aux)
    assert int(bal.step) == int(before["step"]) + 1
    precision = torch.exp(-before["log_var"])
    expected = 0.5 - 0.5 * precision * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(bal.log_var.grad, expected)


def _backward_units(bal: mbk.Balancer, aux: torch.Tensor | float = 0.0) -> None:
    """A backward through the fork with every task's loss the sum of its copy of z (plus
    ``aux``, what observe returned)."""
    zs = bal(torch.ones(2, 2, requires_grad=True))
    (sum(z.sum() for z in zs) + aux).backward()


@pytest.mark.parametrize(
    ("name", "kwargs", "losses", "allowed", "bad"),
    [
        ("gls", {}, [1.0, 0.0, 2.0], "> 0.0", [1]),
        ("geometric_mean", {}, [1.0, 0.0, -2.0], "> 0.0", [1, 2]),
        ("gradnorm", {}, [0.0, 1.0, 2.0], "> 0.0", [0]),
        ("log", {}, [1.0, -1e-8, 2.0], "> -1e-08", [1]),
        ("log", {"eps": 0.0}, [1.0, 0.0, 2.0], "> -0.0", [1]),
        ("famo", {}, [1.0, -1e-8, 2.0], "> -1e-08", [1]),
        (
            "famo",
            {"min_losses": [0.0, 1.0, 0.0]},
            [1.0, 1.0 - 2e-8, 2.0],
            r"> \[.*\] \(per task\)",
            [1],
        ),
        ("stch", {"warmup": 2}, [1.0, 2.0, -1e-30], ">= 0.0", [2]),
    ],
)
def test_losses_outside_the_domain_are_refused(
    name: str, kwargs: dict, losses: list[float], allowed: str, bad: list[int]
) -> None:
    """The message names the rule, the allowed range and the task index(es)."""
    bal = mbk.Balancer(mbk.make_rule(name, T, **kwargs))
    match = rf"losses must be {allowed}.*{name}.*task index\(es\) {re.escape(str(bad))}"
    with pytest.raises(ValueError, match=match):
        bal.observe(losses)
    with pytest.raises(ValueError, match="no losses were observed"):
        _backward_units(bal)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("log", {}), ("famo", {}), ("stch", {"warmup": 2}), ("stch", {}), ("dwa", {}), ("uw", {})],
)
def test_a_zero_loss_is_in_the_domain_where_the_formula_allows_it(name: str, kwargs: dict) -> None:
    bal = mbk.Balancer(mbk.make_rule(name, T, **kwargs))
    bal.observe([1.0, 0.0, 2.0])
    bal.step_weights(torch.eye(T, dtype=torch.float64))
    assert bool(bal.stats.finite) and bool(torch.isfinite(bal.weights).all())


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("dwa", {"temperature": 0.0}, r"temperature must be in \(0, inf\)"),
        ("stch", {"mu": -1.0}, r"mu must be in \(0, inf\)"),
        ("stch", {"warmup": -1}, r"warmup must be an integer in \[0, inf\)"),
        ("stch", {"warmup": 2, "preferences": [1, 1, 1]}, "must be None when warmup > 0"),
        ("stch", {"preferences": [1, 1]}, "preferences must have num_tasks=3 entries"),
        ("stch", {"reference": [0, float("nan"), 0]}, "reference must be 3"),
        ("famo", {"lr": -0.1}, r"lr must be in \[0, inf\)"),
        ("famo", {"weight_decay": -1.0}, r"weight_decay must be in \[0, inf\)"),
        ("famo", {"min_losses": [0.0]}, "min_losses must be 3"),
        ("gradnorm", {"alpha": -0.5}, r"alpha must be in \[0, inf\)"),
        ("gradnorm", {"lr": 0.0}, r"lr must be in \(0, inf\)"),
        ("log", {"eps": float("nan")}, r"eps must be in \[0, inf\)"),
        ("uw", {"num_tasks": 0}, r"num_tasks must be an integer in \[1, inf\)"),
    ],
)
def test_invalid_hyperparameters_name_the_parameter(name: str, kwargs: dict, match: str) -> None:
    args = {"num_tasks": T, **kwargs}
    with pytest.raises(ValueError, match=match):
        mbk.make_rule(name, **args)


def test_loss_hooks_on_a_gram_rule_are_refused() -> None:
    bal = mbk.Balancer(mbk.make_rule("multibalance", T))
    for call in (lambda: bal.observe([1.0] * T), lambda: bal.update([1.0] * T), bal.end_epoch):
        with pytest.raises(ValueError, match="is for the loss-aware weightings"):
            call()


def test_famo_update_needs_a_step_first_and_bad_losses_change_nothing() -> None:
    model, bal, _opt = _setup("famo")
    with pytest.raises(ValueError, match="must follow a balancing step"):
        bal.update([1.0, 1.0, 1.0])
    x, y = _batch(0)
    losses = model.task_losses(bal(model.bottom(x)), y)
    bal.observe(losses)
    sum(losses).backward()
    before = _snapshot(bal)
    with pytest.raises(ValueError, match="losses must be finite"):
        bal.update([1.0, float("inf"), 1.0])
    _assert_same(_snapshot(bal), before)
    bal.update([0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="must follow a balancing step"):
        bal.update([0.5, 0.5, 0.5])


def test_update_and_end_epoch_are_no_ops_where_the_weighting_has_none() -> None:
    model, bal, opt = _setup("uw")
    _step(model, bal, opt, 0)
    before = _snapshot(bal)
    bal.update([1.0, 2.0, 3.0])
    bal.end_epoch()
    _assert_same(_snapshot(bal), before)


@pytest.mark.parametrize("name", ["uw", "gradnorm", "famo"])
def test_fast_paths_switch_changes_nothing(name: str) -> None:
    """Loss-aware weightings take the general path whatever fast_paths says."""
    runs = []
    for fast in (True, False):
        model, bal, opt = _setup(name)
        bal.fast_paths = fast
        runs.append([_step(model, bal, opt, k) for k in range(3)] + [_snapshot(bal)])
    for a, b in zip(runs[0][:-1], runs[1][:-1]):
        assert torch.equal(a, b)
    _assert_same(runs[0][-1], runs[1][-1])


def test_skip_task_drops_the_task_from_z_not_from_the_parameter_gradient() -> None:
    """The dropped task's gradient on Z is left out; its parameter's gradient depends on
    its (finite, observed) loss alone, so autograd gives it as for every task."""
    bal = mbk.Balancer(mbk.make_rule("uw", T), nonfinite="skip_task", warn_after_refused=None)
    z = torch.randn(4, 2, requires_grad=True)
    zs = bal(z)
    aux = bal.observe([1.0, 2.0, 3.0])
    losses = [zs[0].sum(), zs[1].sum() * float("nan"), zs[2].pow(2).sum()]
    (sum(losses) + aux).backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())
    expected = 0.5 * (torch.ones(4, 2) + 2 * z.detach())
    torch.testing.assert_close(z.grad, expected)
    assert bal.stats.weights.tolist() == [0.5, 0.0, 0.5]
    assert bal.log_var.grad.tolist() == [0.5 - 0.5 * 1.0, 0.5 - 0.5 * 2.0, 0.5 - 0.5 * 3.0]


def test_skip_update_refuses_the_step_the_parameter_gradient_is_the_losses() -> None:
    bal = mbk.Balancer(mbk.make_rule("uw", T), warn_after_refused=None)
    z = torch.randn(4, 2, requires_grad=True)
    zs = bal(z)
    aux = bal.observe([1.0, 2.0, 3.0])
    (sum([zs[0].sum(), zs[1].sum() * float("nan"), zs[2].sum()]) + aux).backward()
    assert not bool(bal.stats.finite)
    assert int(bal.step) == 0
    assert bal.log_var.grad.tolist() == [0.0, -0.5, -1.0]


def test_deepcopy_and_reset_restore_the_initial_parameters() -> None:
    model, bal, opt = _setup("imtl_l")
    for k in range(3):
        _step(model, bal, opt, k)
    clone = copy.deepcopy(bal)
    _assert_same(_snapshot(clone), _snapshot(bal))
    bal.observe([1.0, 2.0, 3.0])
    bal.reset()  # forgets the observed losses too
    assert torch.equal(bal.log_scale.detach(), torch.zeros(T, dtype=torch.float64))
    assert int(bal.step) == 0
    with pytest.raises(ValueError, match="no losses were observed"):
        _backward_units(bal)


def test_grad_scaler_scales_the_parameter_gradient_like_every_other() -> None:
    """With a GradScaler the backward adds scale * dF/ds, so unscale_ gives dF/ds."""
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    bal = mbk.Balancer(mbk.make_rule("uw", T), grad_scaler=scaler)
    z = torch.randn(4, 2, requires_grad=True)
    opt = torch.optim.SGD([z, *bal.parameters()], lr=0.1)
    zs = bal(z)
    losses = [zs[0].pow(2).sum(), zs[1].abs().sum(), (2 * zs[2]).pow(2).sum()]
    aux = bal.observe(losses)
    assert aux.dtype == torch.float32 and float(aux.detach()) == 0.0
    scaler.scale(sum(losses) + aux).backward()
    values = torch.stack([loss.detach() for loss in losses]).double()
    expected = 0.5 - 0.5 * values
    torch.testing.assert_close(bal.log_var.grad, 1024.0 * expected)
    scaler.unscale_(opt)
    torch.testing.assert_close(bal.log_var.grad, expected)
    # the weights do not depend on the scale: z receives 0.5 * sum_t g_t
    z_ref = z.detach().requires_grad_()
    (0.5 * (z_ref.pow(2).sum() + z_ref.abs().sum() + (2 * z_ref).pow(2).sum())).backward()
    torch.testing.assert_close(z.grad, z_ref.grad)


# ---------------------------------------------------------------- learned parameters
@pytest.mark.parametrize(("name", "param"), [("uw", "log_var"), ("imtl_l", "log_scale")])
def test_accumulation_over_k_micro_batches_matches_autograd_on_f_over_k(
    name: str, param: str
) -> None:
    """``((sum(losses) + aux) / k).backward()`` per micro-batch: the parameter's gradient
    and the bottom's are autograd's on ``sum_mb F(L(mb)) / k`` (float64)."""
    k = 3
    torch.manual_seed(5)
    ref_model = ToyMultiTask(T, dtype=torch.float64)
    model = copy.deepcopy(ref_model)
    s = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    bal = mbk.Balancer(mbk.make_rule(name, T))
    with torch.no_grad():
        getattr(bal, param).copy_(s)
    gen = torch.Generator().manual_seed(9)
    batches = [
        (torch.randn(8, 6, generator=gen, dtype=torch.float64), torch.randn(8, T, generator=gen))
        for _ in range(k)
    ]
    for x, y in batches:
        losses = torch.stack(ref_model.task_losses([ref_model.bottom(x)] * T, y.double()))
        if name == "uw":
            objective = 0.5 * (torch.exp(-s) * losses + s).sum()
        else:
            objective = (torch.exp(s) * losses - s).sum()
        (objective / k).backward()
    for x, y in batches:
        losses = model.task_losses(bal(model.bottom(x)), y.double())
        aux = bal.observe(losses)
        ((sum(losses) + aux) / k).backward()
    torch.testing.assert_close(getattr(bal, param).grad, s.grad, rtol=1e-13, atol=1e-15)
    for p_ref, p in zip(ref_model.bottom.parameters(), model.bottom.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-12, atol=1e-15)


def test_grad_scaler_run_skips_the_overflowing_step_for_the_parameters_too() -> None:
    """A GradScaler whose first steps overflow: the scaler skips optimizer.step(), so
    log_var stays; afterwards it trains exactly as without the scaler."""
    runs = {}
    for scaled in (False, True):
        torch.manual_seed(2)
        model = ToyMultiTask(T)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, enabled=scaled)
        bal = mbk.Balancer(
            mbk.make_rule("uw", T), grad_scaler=scaler if scaled else None, warn_after_refused=None
        )
        opt = torch.optim.SGD([*model.parameters(), *bal.parameters()], lr=0.05)
        history = []
        for k in range(6):
            x, y = _batch(k % 3)
            opt.zero_grad()
            losses = model.task_losses(bal(model.bottom(x)), y)
            aux = bal.observe(losses)
            scaler.scale(sum(losses) + aux).backward()
            scaler.step(opt)
            scaler.update()
            history.append(bal.log_var.detach().clone())
        runs[scaled] = (history, scaler)
    history, scaler = runs[True]
    assert scaler.get_scale() < 2.0**127  # it backed off: the first steps overflowed
    skipped = next(i for i, h in enumerate(history) if not torch.equal(h, torch.zeros(T).double()))
    assert skipped >= 1
    # the accepted steps are the unscaled run's first ones
    for a, b in zip(history[skipped:], runs[False][0]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_parameters_that_do_not_require_grad_get_no_gradient() -> None:
    bal = mbk.Balancer(mbk.make_rule("uw", T))
    bal.log_var.requires_grad_(False)
    aux = bal.observe([1.0, 2.0, 3.0])
    assert not aux.requires_grad and float(aux) == 0.0
    _backward_units(bal, aux)
    assert bal.log_var.grad is None
    for name in ("dwa", "famo", "log"):  # no learned parameters: a zero without grad
        aux = mbk.Balancer(mbk.make_rule(name, T)).observe(torch.ones(T, dtype=torch.float16))
        assert not aux.requires_grad and aux.dtype == torch.float16 and float(aux) == 0.0


def test_learned_parameters_on_another_device_are_refused() -> None:
    """The parameters stay where they are (the optimiser holds them); losses elsewhere are
    refused with the devices named, and nothing changes."""
    bal = mbk.Balancer(mbk.make_rule("uw", T))
    bal.log_var = torch.nn.Parameter(torch.zeros(T, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match=r"losses are on cpu.*\(log_var\) are on meta.*bal.to"):
        bal.observe([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no losses were observed"):
        bal.step_weights(torch.eye(T, dtype=torch.float64))


# ---------------------------------------------------------------- observe and update
def test_a_second_observe_before_backward_is_refused() -> None:
    """All micro-batches forwarded and observed first, then back-propagated: the second
    observe would replace the first losses, so it raises and changes nothing."""
    model, bal, _opt = _setup("log")
    x, y = _batch(0)
    first = model.task_losses(bal(model.bottom(x)), y)
    bal.observe(first)
    second = model.task_losses(bal(model.bottom(x)), 10.0 * y)
    before = _snapshot(bal)
    with pytest.raises(ValueError, match="losses observed before have not been used.*backward"):
        bal.observe(second)
    _assert_same(_snapshot(bal), before)
    sum(first).backward()  # uses the first losses
    expected = 1.0 / (torch.stack([v.detach() for v in first]).double() + 1e-8)
    torch.testing.assert_close(bal.stats.weights, expected)
    bal.observe(second)  # consumed: the next observe is fine
    bal.discard_observed()
    with pytest.raises(ValueError, match="no losses were observed"):
        sum(second).backward()


def test_famo_update_after_a_refused_step_does_nothing() -> None:
    """A GradScaler overflow refuses the balancing step and skips optimizer.step(): update
    then learns nothing and does not raise; a second update still needs a step."""
    torch.manual_seed(0)
    model = ToyMultiTask(T)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    bal = mbk.Balancer(mbk.make_rule("famo", T), grad_scaler=scaler, warn_after_refused=None)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _batch(0)
    accepted = 0
    for _ in range(6):
        opt.zero_grad()
        losses = model.task_losses(bal(model.bottom(x)), y)
        bal.observe(losses)
        scaler.scale(sum(losses)).backward()
        scaler.step(opt)
        scaler.update()
        before = _snapshot(bal)
        with torch.no_grad():
            bal.update(model.task_losses([model.bottom(x)] * T, y))
        if not bool(bal.stats.finite):
            _assert_same(_snapshot(bal), before)
        else:
            accepted += 1
            assert int(bal.adam_step) == accepted
        assert int(bal.pending) == 0
        with pytest.raises(ValueError, match="must follow a balancing step"):
            bal.update([1.0, 1.0, 1.0])
    assert accepted >= 1 and int(bal.step) == accepted


def test_famo_check_state_wants_prev_losses_above_the_bounds_when_pending() -> None:
    bal = mbk.Balancer(mbk.make_rule("famo", T, min_losses=[0.0, 1.0, 0.0]))
    bal.observe([1.0, 2.0, 3.0])
    bal.step_weights(torch.eye(T, dtype=torch.float64))
    sd = bal.state_dict()
    sd["prev_losses"] = torch.tensor([1.0, 0.5, 3.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="'prev_losses' must be > min_losses - 1e-8"):
        mbk.Balancer(mbk.make_rule("famo", T, min_losses=[0.0, 1.0, 0.0])).load_state_dict(sd)
    sd["pending"] = torch.tensor(0)  # no step pending: prev_losses are not read
    mbk.Balancer(mbk.make_rule("famo", T, min_losses=[0.0, 1.0, 0.0])).load_state_dict(sd)


@pytest.mark.parametrize(
    ("name", "kwargs", "entry"),
    [
        ("dwa", {}, "loss_sum"),
        ("stch", {"warmup": 5}, "loss_sum"),
        ("famo", {}, "prev_losses"),
        ("gradnorm", {}, "initial_losses"),
    ],
)
def test_skip_task_commits_the_loss_state_of_a_dropped_task(
    name: str, kwargs: dict, entry: str
) -> None:
    """A task dropped for a non-finite gradient still had a finite observed loss: the
    state computed from the losses takes the step for every task (DWA's epoch average is
    then the true one)."""
    bal = mbk.Balancer(
        mbk.make_rule(name, 2, **kwargs), nonfinite="skip_task", warn_after_refused=None
    )
    good = torch.eye(2, dtype=torch.float64)
    bad = good.clone()
    bad[1, 1] = float("nan")
    for k, gram in enumerate((bad, good, good, bad)):
        bal.observe([2.0 + k, 3.0 + k])
        bal.step_weights(gram)
        if name == "famo":
            bal.update([1.0, 1.0])
    value = getattr(bal, entry).tolist()
    expected = {
        "loss_sum": [2.0 + 3.0 + 4.0 + 5.0, 3.0 + 4.0 + 5.0 + 6.0],
        "prev_losses": [5.0, 6.0],
        "initial_losses": [2.0, 3.0],
    }[entry]
    assert value == expected
    if name == "dwa":
        bal.end_epoch()
        assert bal.history[:, 1].tolist() == [3.5, 4.5]


def test_forgetting_aux_warns_once() -> None:
    """observe's aux left out of the backward: the learned parameters get no gradient,
    which the next observe says (once); with aux, or with step_weights, no warning."""
    model, bal, opt = _setup("uw")
    x, y = _batch(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            _step(model, bal, opt, 0)  # with aux
        for _ in range(2):
            bal.observe([1.0, 2.0, 3.0])
            bal.step_weights(torch.eye(T, dtype=torch.float64))
    opt.zero_grad()
    for k in range(3):
        losses = model.task_losses(bal(model.bottom(x)), y)
        if k == 2:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                bal.observe(losses)  # warned once already
            break
        if k == 1:
            with pytest.warns(UserWarning, match="log_var.*got no gradient.*aux"):
                bal.observe(losses)
        else:
            bal.observe(losses)
        sum(losses).backward()
    assert bal.log_var.grad is None or bool((bal.log_var.grad == 0).all())
