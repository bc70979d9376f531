"""torch.compile: a model using the balancer compiles and trains; one graph break, at the fork."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import mbkernels as mbk

T = 3


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
        self.balancer = mbk.MultiBalance(T, beta=0.9, relax=0.7, reference="mean")
        self.towers = nn.ModuleList(nn.Linear(16, 1) for _ in range(T))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        zs = self.balancer(self.bottom(x))
        losses = [
            (10.0 ** (i / 2)) * (tower(z).squeeze(-1) - y[:, i]).pow(2).mean()
            for i, (tower, z) in enumerate(zip(self.towers, zs))
        ]
        return torch.stack(losses).sum()


def _train(backend: str | None, steps: int = 6):
    torch._dynamo.reset()
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = torch.tanh(x @ torch.randn(8, T))
    model = Model()
    run = model if backend is None else torch.compile(model, backend=backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = run(x, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, model.balancer


def _check(backend: str) -> None:
    losses, bal = _train(backend)
    eager_losses, eager_bal = _train(None)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(b < a for a, b in itertools.pairwise(losses))  # decreasing
    assert int(bal.step) == 6 and not torch.equal(bal.weights, torch.ones(T))  # it balanced
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(eager_losses))
    torch.testing.assert_close(bal.weights, eager_bal.weights)


def test_compiled_model_trains_aot_eager() -> None:
    _check("aot_eager")


@pytest.mark.slow
def test_compiled_model_trains_inductor() -> None:
    pytest.importorskip("torch._inductor")
    _check("inductor")


def test_one_graph_break_at_the_fork() -> None:
    torch._dynamo.reset()
    model = Model()
    x, y = torch.randn(4, 8), torch.randn(4, T)
    explain = torch._dynamo.explain(model)(x, y)
    assert explain.graph_break_count == 1 and explain.graph_count == 2
    assert "fork" in str(explain.break_reasons[0].reason)
