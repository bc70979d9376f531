"""Loss-aware weightings: bad input (missing, miscounted or non-finite losses, invalid
hyperparameters, hooks on the wrong rule) raises a ValueError naming what to fix and
changes nothing; the state (learned parameters, FAMO's Adam moments, DWA's epochs)
round-trips through the state dict exactly; the fast-path switch and the skip_task
policy keep their meaning."""

from __future__ import annotations

import copy
import io
import math

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
    bal.observe(losses)
    sum(losses).backward()
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
    bal.observe([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=match):
        bal.observe(losses)
    _assert_same(_snapshot(bal), before)
    # the losses observed before are still the ones the step uses
    opt.zero_grad()
    _backward_units(bal)
    precision = torch.exp(-before["log_var"])
    expected = 0.5 - 0.5 * precision * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(bal.log_var.grad, expected)


def _backward_units(bal: mbk.Balancer) -> None:
    """A backward through the fork with every task's loss the sum of its copy of z."""
    zs = bal(torch.ones(2, 2, requires_grad=True))
    sum(z.sum() for z in zs).backward()


@pytest.mark.parametrize("name", ["gls", "geometric_mean", "log", "gradnorm", "famo"])
def test_losses_outside_the_domain_are_refused(name: str) -> None:
    bal = mbk.Balancer(mbk.make_rule(name, T))
    with pytest.raises(ValueError, match=f"losses must be (> 0|above min_losses).*{name}"):
        bal.observe([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="no losses were observed"):
        _backward_units(bal)


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


def test_skip_task_drops_the_task_and_its_parameter_gradient() -> None:
    bal = mbk.Balancer(mbk.make_rule("uw", T), nonfinite="skip_task", warn_after_refused=None)
    z = torch.randn(4, 2, requires_grad=True)
    zs = bal(z)
    bal.observe([1.0, 2.0, 3.0])
    losses = [zs[0].sum(), zs[1].sum() * float("nan"), zs[2].pow(2).sum()]
    sum(losses).backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())
    expected = 0.5 * (torch.ones(4, 2) + 2 * z.detach())
    torch.testing.assert_close(z.grad, expected)
    assert bal.stats.weights.tolist() == [0.5, 0.0, 0.5]
    assert bal.log_var.grad.tolist() == [0.5 - 0.5 * 1.0, 0.0, 0.5 - 0.5 * 3.0]


def test_skip_update_refuses_the_step_and_adds_no_parameter_gradient() -> None:
    bal = mbk.Balancer(mbk.make_rule("uw", T), warn_after_refused=None)
    z = torch.randn(4, 2, requires_grad=True)
    zs = bal(z)
    bal.observe([1.0, 2.0, 3.0])
    sum([zs[0].sum(), zs[1].sum() * float("nan"), zs[2].sum()]).backward()
    assert not bool(bal.stats.finite)
    assert int(bal.step) == 0
    assert bal.log_var.grad.tolist() == [0.0, 0.0, 0.0]


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
    bal.observe(losses)
    scaler.scale(sum(losses)).backward()
    values = torch.stack([loss.detach() for loss in losses]).double()
    expected = 0.5 - 0.5 * values
    torch.testing.assert_close(bal.log_var.grad, 1024.0 * expected)
    scaler.unscale_(opt)
    torch.testing.assert_close(bal.log_var.grad, expected)
    # the weights do not depend on the scale: z receives 0.5 * sum_t g_t
    z_ref = z.detach().requires_grad_()
    (0.5 * (z_ref.pow(2).sum() + z_ref.abs().sum() + (2 * z_ref).pow(2).sum())).backward()
    torch.testing.assert_close(z.grad, z_ref.grad)
