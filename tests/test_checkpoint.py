"""Resuming mid-training is bit-identical; a state for another num_tasks changes nothing."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import mbkernels as mbk

from .helpers import ToyMultiTask


class Model(nn.Module):
    """The toy model with its balancer as a submodule (how a real job holds it)."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.net = ToyMultiTask(num_tasks)
        self.balancer = mbk.MultiBalance(num_tasks, beta=0.9, relax=0.7, reference="mean")

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum(self.net.task_losses(self.balancer(self.net.bottom(x)), y))


def _step(model: Model, opt: torch.optim.Optimizer, batch) -> None:
    opt.zero_grad()
    model.loss(*batch).backward()
    opt.step()


def _snapshot(model: Model, opt: torch.optim.Optimizer) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    return buf.getvalue()


def test_resume_from_checkpoint_is_bit_identical() -> None:
    num_tasks = 3
    batches = [(torch.randn(16, 6), torch.randn(16, num_tasks)) for _ in range(10)]
    model = Model(num_tasks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for batch in batches[:5]:
        _step(model, opt, batch)
    saved = _snapshot(model, opt)
    for batch in batches[5:]:
        _step(model, opt, batch)

    # A fresh process would build new objects with other initial values, then load.
    torch.manual_seed(123)
    resumed = Model(num_tasks)
    ropt = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    ckpt = torch.load(io.BytesIO(saved), weights_only=True)
    mbk.load_state_dict(resumed, ckpt["model"])
    ropt.load_state_dict(ckpt["opt"])
    assert int(resumed.balancer.step) == 5
    for batch in batches[5:]:
        _step(resumed, ropt, batch)

    final, again = model.state_dict(), resumed.state_dict()
    for key, value in final.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, again[key]), key
    assert torch.equal(model.balancer.stats.weights, resumed.balancer.stats.weights)


def test_other_num_tasks_raises_before_anything_is_copied() -> None:
    model = Model(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _step(model, opt, (torch.randn(8, 6), torch.randn(8, 3)))
    other = Model(4)
    _step(
        other, torch.optim.SGD(other.parameters(), lr=0.1), (torch.randn(8, 6), torch.randn(8, 4))
    )
    before = copy.deepcopy(model.state_dict())
    sd = other.state_dict()
    with pytest.raises(ValueError, match=r"saved for num_tasks=4.*num_tasks=3"):
        mbk.load_state_dict(model, sd)
    with pytest.raises(ValueError, match=r"num_tasks=4.*num_tasks=3"):
        model.balancer.load_state_dict(other.balancer.state_dict())
    with pytest.raises(ValueError, match="num_tasks"):
        mbk.check_state_dict(model, sd)
    after = model.state_dict()
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, after[key]), key


def test_nonfinite_checkpoint_entry_is_rejected() -> None:
    bal = mbk.MultiBalance(2)
    sd = bal.state_dict()
    sd["ema"] = torch.tensor([1.0, float("nan")])
    with pytest.raises(ValueError, match="'ema' must be finite"):
        bal.load_state_dict(sd)
    assert torch.equal(bal.ema, torch.zeros(2))
