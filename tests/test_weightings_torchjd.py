"""Loss-aware weightings through the fork against TorchJD's scalarisers: after one and
several training steps the gradient reaching Z, and the learned parameters' gradients and
updates, equal those of autograd on TorchJD's scalarised loss (float64 throughout).

Both runs train the bottom (whose gradient is dF/dZ pulled back) and the learned
parameters; the towers stay fixed, since the fork gives tower t the gradient of its own
loss L_t (docs/rules.md, "Loss-aware weightings"), which the last test checks."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

import mbkernels as mbk

from .helpers import ToyMultiTask

torchjd_scalarization = pytest.importorskip("torchjd.scalarization")

T = 3
STEPS = 4
LR = 0.05


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(12, T, generator=gen, dtype=torch.float64)
    return x, y


def _model() -> ToyMultiTask:
    torch.manual_seed(0)
    return ToyMultiTask(T, dtype=torch.float64)


class _Pair:
    """The same model trained twice: on TorchJD's scalarised loss, and through the
    balancer with ``sum(losses).backward()``."""

    def __init__(self, scalarizer: nn.Module, bal: mbk.Balancer) -> None:
        self.ref_model = _model()
        self.model = copy.deepcopy(self.ref_model)
        self.scalarizer = scalarizer.double()
        self.bal = bal
        self.ref_opt = torch.optim.SGD(
            [*self.ref_model.bottom.parameters(), *self.scalarizer.parameters()], lr=LR
        )
        self.opt = torch.optim.SGD([*self.model.bottom.parameters(), *bal.parameters()], lr=LR)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step of both; returns (reference dF/dZ, balancer's z.grad)."""
        self.ref_opt.zero_grad()
        z_ref = self.ref_model.bottom(x)
        z_ref.retain_grad()
        losses = torch.stack(self.ref_model.task_losses([z_ref] * T, y))
        self.scalarizer(losses).backward()
        self.ref_opt.step()

        self.opt.zero_grad()
        z = self.model.bottom(x)
        z.retain_grad()
        task_losses = self.model.task_losses(self.bal(z), y)
        aux = self.bal.observe(task_losses)
        (sum(task_losses) + aux).backward()
        self.grads = {n: p.grad.clone() for n, p in self.bal.named_parameters()}
        self.opt.step()
        assert z_ref.grad is not None and z.grad is not None
        return z_ref.grad, z.grad

    def new_losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both models' losses on the same batch, after their step (FAMO's update)."""
        with torch.no_grad():
            ref = torch.stack(self.ref_model.task_losses([self.ref_model.bottom(x)] * T, y))
            ours = torch.stack(self.model.task_losses([self.model.bottom(x)] * T, y))
        return ref, ours

    def assert_bottoms_equal(self) -> None:
        for p_ref, p in zip(self.ref_model.bottom.parameters(), self.model.bottom.parameters()):
            torch.testing.assert_close(p, p_ref, rtol=1e-11, atol=1e-13)


def _run(
    pair: _Pair,
    after: Callable[[int, _Pair, torch.Tensor, torch.Tensor], None] | None = None,
    *,
    steps: int = STEPS,
) -> None:
    for k in range(steps):
        x, y = _batch(k)
        ref_grad, grad = pair.step(x, y)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-11, atol=1e-13)
        if after is not None:
            after(k, pair, x, y)
        pair.assert_bottoms_equal()


def test_uw_matches_torchjd() -> None:
    scal = torchjd_scalarization.UW(T)
    pair = _Pair(scal, mbk.Balancer(mbk.make_rule("uw", T)))

    def after(k: int, pair: _Pair, x: torch.Tensor, y: torch.Tensor) -> None:
        # the reference's log_var.grad is from its step (zeroed at the next one)
        torch.testing.assert_close(pair.grads["log_var"], scal.log_var.grad, rtol=1e-12, atol=0)
        torch.testing.assert_close(pair.bal.log_var, scal.log_var, rtol=1e-12, atol=1e-15)

    _run(pair, after)
    assert float(pair.bal.log_var.detach().abs().min()) > 1e-3  # the log-variances did learn


def test_imtl_l_matches_torchjd() -> None:
    scal = torchjd_scalarization.IMTLL(T)
    pair = _Pair(scal, mbk.Balancer(mbk.make_rule("imtl_l", T)))

    def after(k: int, pair: _Pair, x: torch.Tensor, y: torch.Tensor) -> None:
        torch.testing.assert_close(pair.grads["log_scale"], scal.log_scale.grad, rtol=1e-12, atol=0)
        torch.testing.assert_close(pair.bal.log_scale, scal.log_scale, rtol=1e-12, atol=1e-15)

    _run(pair, after)
    assert float(pair.bal.log_scale.detach().abs().min()) > 1e-3


@pytest.mark.parametrize("name", ["geometric_mean", "gls"])
def test_geometric_mean_matches_torchjd(name: str) -> None:
    _run(_Pair(torchjd_scalarization.GeometricMean(), mbk.Balancer(mbk.make_rule(name, T))))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mu": 1.0},
        {"mu": 0.1, "preferences": [0.2, 0.5, 0.3], "reference": [0.1, -0.2, 0.3]},
    ],
)
def test_stch_matches_torchjd(kwargs: dict) -> None:
    torchjd_kwargs = {"mu": kwargs["mu"]}
    for key in ("preferences", "reference"):
        if key in kwargs:
            value = torch.tensor(kwargs[key], dtype=torch.float64)
            torchjd_kwargs["weights" if key == "preferences" else key] = value
    if "preferences" not in kwargs:
        torchjd_kwargs["weights"] = torch.full((T,), 1.0 / T, dtype=torch.float64)
    scal = torchjd_scalarization.STCH(**torchjd_kwargs)
    _run(_Pair(scal, mbk.Balancer(mbk.make_rule("stch", T, **kwargs))))


def test_dwa_matches_torchjd_over_epochs() -> None:
    scal = torchjd_scalarization.DWA(temperature=2.0)
    pair = _Pair(scal, mbk.Balancer(mbk.make_rule("dwa", T)))
    weights = []
    for epoch in range(4):
        for k in range(2):
            x, y = _batch(10 * epoch + k)
            ref_grad, grad = pair.step(x, y)
            torch.testing.assert_close(grad, ref_grad, rtol=1e-11, atol=1e-13)
            weights.append(pair.bal.stats.weights.clone())
        scal.step()
        pair.bal.end_epoch()
        pair.assert_bottoms_equal()
    # uniform for two epochs, then the loss ratios: the last epochs' weights differ from 1
    assert torch.equal(weights[0], torch.ones(T, dtype=torch.float64))
    assert float((weights[-1] - 1).abs().max()) > 1e-4
    torch.testing.assert_close(weights[-1].sum(), torch.tensor(float(T), dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs", [{}, {"lr": 0.1, "weight_decay": 0.0, "min_losses": [0.01, 0.0, 0.02]}]
)
def test_famo_matches_torchjd_with_its_update(kwargs: dict) -> None:
    torchjd_kwargs = dict(kwargs)
    if "min_losses" in kwargs:
        torchjd_kwargs["min_losses"] = torch.tensor(kwargs["min_losses"], dtype=torch.float64)
    scal = torchjd_scalarization.FAMO(T, **torchjd_kwargs)
    pair = _Pair(scal, mbk.Balancer(mbk.make_rule("famo", T, **kwargs)))

    def after(k: int, pair: _Pair, x: torch.Tensor, y: torch.Tensor) -> None:
        ref_losses, losses = pair.new_losses(x, y)
        scal.update(ref_losses)
        pair.bal.update(losses)
        torch.testing.assert_close(pair.bal.logits, scal._w.detach(), rtol=1e-10, atol=1e-14)

    _run(pair, after, steps=6)
    assert float(pair.bal.logits.abs().max()) > 1e-3  # the logits did learn


def test_towers_receive_their_own_loss_gradient() -> None:
    """Only Z's gradient is reweighted: tower t's parameters get dL_t/dtheta_t."""
    model = _model()
    bal = mbk.Balancer(mbk.make_rule("uw", T))
    with torch.no_grad():
        bal.log_var.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x, y = _batch(0)
    losses = model.task_losses(bal(model.bottom(x)), y)
    bal.observe(losses)
    sum(losses).backward()
    for t, tower in enumerate(model.towers):
        z = model.bottom(x).detach()
        expected = torch.autograd.grad(model.task_losses([z] * T, y)[t], tower.weight)[0]
        torch.testing.assert_close(tower.weight.grad, expected, rtol=1e-12, atol=1e-15)
