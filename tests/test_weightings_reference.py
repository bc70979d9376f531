"""Loss-aware weightings without a TorchJD counterpart against float64 references written
from the papers: GradNorm (per-task gradients by autograd, its L_grad differentiated by
autograd), GLS's product form, STCH with the authors' warm-up and nadir point, and the
log transform. The gradient reaching Z must equal the reference after several steps."""

from __future__ import annotations

import copy

import pytest
import torch

import mbkernels as mbk

from .helpers import ToyMultiTask

T = 3
LR = 0.05


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(200 + step)
    return (
        torch.randn(12, 6, generator=gen, dtype=torch.float64),
        torch.randn(12, T, generator=gen, dtype=torch.float64),
    )


def _balancer_step(
    model: ToyMultiTask, bal: mbk.Balancer, opt: torch.optim.Optimizer, x, y
) -> torch.Tensor:
    opt.zero_grad()
    z = model.bottom(x)
    z.retain_grad()
    losses = model.task_losses(bal(z), y)
    bal.observe(losses)
    sum(losses).backward()
    opt.step()
    assert z.grad is not None
    return z.grad


def _scalarised_step(model: ToyMultiTask, opt: torch.optim.Optimizer, objective, x, y):
    """Reference step: autograd of objective(losses) on the bottom; returns dF/dZ."""
    opt.zero_grad()
    z = model.bottom(x)
    z.retain_grad()
    losses = torch.stack(model.task_losses([z] * T, y))
    objective(losses).backward()
    opt.step()
    assert z.grad is not None
    return z.grad


def _models() -> tuple[ToyMultiTask, ToyMultiTask]:
    torch.manual_seed(1)
    ref = ToyMultiTask(T, dtype=torch.float64)
    return ref, copy.deepcopy(ref)


def _compare(name: str, objective_for_step, steps: int = 5, **kwargs) -> None:
    ref_model, model = _models()
    bal = mbk.Balancer(mbk.make_rule(name, T, **kwargs))
    ref_opt = torch.optim.SGD(ref_model.bottom.parameters(), lr=LR)
    opt = torch.optim.SGD(model.bottom.parameters(), lr=LR)
    for k in range(steps):
        x, y = _batch(k)
        expected = _scalarised_step(ref_model, ref_opt, objective_for_step(k), x, y)
        got = _balancer_step(model, bal, opt, x, y)
        torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-13)


def test_gls_is_the_papers_product() -> None:
    _compare("gls", lambda k: lambda losses: torch.prod(losses) ** (1.0 / T))


@pytest.mark.parametrize("eps", [1e-8, 0.5])
def test_log_transform(eps: float) -> None:
    _compare("log", lambda k: lambda losses: torch.log(losses + eps).sum(), eps=eps)


@pytest.mark.parametrize("mu", [1.0, 0.2])
def test_stch_warmup_and_nadir_as_the_authors_code(mu: float) -> None:
    warmup = 2
    seen: list[torch.Tensor] = []

    def objective_for_step(k: int):
        def objective(losses: torch.Tensor) -> torch.Tensor:
            if k < warmup:  # the authors' warm-up: equal weights on log losses
                seen.append(losses.detach())
                return torch.log(losses + 1e-20).sum()
            nadir = torch.stack(seen).mean(0)
            u = torch.log(losses / nadir + 1e-20)
            reg = u - u.detach().max()
            return mu * torch.log(torch.exp(reg / mu).sum()) * T

        return objective

    _compare("stch", objective_for_step, steps=5, mu=mu, warmup=warmup)


def _gradnorm_reference(
    model: ToyMultiTask, x, y, w: torch.Tensor, initial: torch.Tensor | None, alpha, lr
):
    """One GradNorm step from the paper on the representation: per-task gradients by
    autograd, L_grad = sum |w_t ||g_t|| - mean(w ||g||) r_t^alpha| with the target
    detached, differentiated by autograd w.r.t. w; then w -= lr grad, clamp, renormalise."""
    z = model.bottom(x).detach().requires_grad_()
    losses = model.task_losses([z] * T, y)
    g = [torch.autograd.grad(loss, z)[0] for loss in losses]
    loss_vec = torch.stack([loss.detach() for loss in losses])
    initial = loss_vec if initial is None else initial
    wv = w.clone().requires_grad_()
    norms = torch.stack([torch.linalg.vector_norm(wv[t] * g[t]) for t in range(T)])
    ratio = loss_vec / initial
    target = (norms.mean() * (ratio / ratio.mean()) ** alpha).detach()
    l_grad = (norms - target).abs().sum()
    (grad_w,) = torch.autograd.grad(l_grad, wv)
    stepped = (w - lr * grad_w).clamp_min(0)
    combined = sum(w[t] * g[t] for t in range(T))
    return combined, T * stepped / stepped.sum(), initial


@pytest.mark.parametrize("alpha", [1.5, 0.0])
def test_gradnorm_as_the_paper(alpha: float) -> None:
    lr_w = 0.2
    ref_model, model = _models()
    bal = mbk.Balancer(mbk.make_rule("gradnorm", T, alpha=alpha, lr=lr_w))
    ref_opt = torch.optim.SGD(ref_model.bottom.parameters(), lr=LR)
    opt = torch.optim.SGD(model.bottom.parameters(), lr=LR)
    w = torch.ones(T, dtype=torch.float64)
    initial = None
    for k in range(6):
        x, y = _batch(k)
        expected, w_next, initial = _gradnorm_reference(ref_model, x, y, w, initial, alpha, lr_w)
        ref_opt.zero_grad()
        z = ref_model.bottom(x)
        z.backward(expected)
        ref_opt.step()
        got = _balancer_step(model, bal, opt, x, y)
        torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-13)
        torch.testing.assert_close(bal.stats.weights, w, rtol=1e-12, atol=0)
        w = w_next
        torch.testing.assert_close(bal.task_weights, w, rtol=1e-12, atol=1e-15)
    assert float((w - 1).abs().max()) > 0.05  # the weights did move
    torch.testing.assert_close(w.sum(), torch.tensor(float(T), dtype=torch.float64))
