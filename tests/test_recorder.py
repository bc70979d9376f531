"""StatsRecorder / history_from_stats: an own training loop's bal.stats as the runner's
tidy history, checked against gradients computed independently."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mbkernels as mbk
import mbviz
from mbviz.figures import cosine_heatmap, magnitudes_and_weights
from mbviz.problems import SyntheticProblem
from mbviz.runner import train

NAMES = ["task1", "task2"]


def _loop(steps: int = 6):
    torch.manual_seed(0)
    bottom, towers = nn.Linear(4, 8), nn.ModuleList(nn.Linear(8, 1) for _ in NAMES)
    bal = mbk.MultiBalance(num_tasks=2, relax=1.0, full_gram=True)  # full_gram: cosines too
    opt = torch.optim.SGD([*bottom.parameters(), *towers.parameters()], lr=0.05)
    rec = mbviz.StatsRecorder(NAMES, rule="multibalance")
    kept, losses_kept, true_norms = [], [], []
    for _ in range(steps):
        x = torch.randn(16, 4)
        y = torch.stack([x[:, 0], 100.0 * x[:, 1]], 1)  # the second task 100x larger
        opt.zero_grad()
        z = bottom(x)
        # reference: each task's gradient on z, computed on its own
        zd = z.detach().requires_grad_()
        norms = []
        for t, tower in enumerate(towers):
            (g,) = torch.autograd.grad(((tower(zd)[:, 0] - y[:, t]) ** 2).mean(), zd)
            norms.append(float(g.norm()))
        true_norms.append(norms)
        losses = [
            ((tw(zt)[:, 0] - y[:, t]) ** 2).mean() for t, (tw, zt) in enumerate(zip(towers, bal(z)))
        ]
        sum(losses).backward()
        rec.record(bal.stats, losses)
        kept.append(bal.stats)
        losses_kept.append([float(v.detach()) for v in losses])
        opt.step()
    return rec, kept, losses_kept, true_norms


def test_recorder_history_matches_the_gradients_and_the_runner_columns() -> None:
    rec, _, losses, true_norms = _loop()
    h = rec.history()
    runner_h = train(SyntheticProblem(num_tasks=2), steps=2, batch_size=8, progress=False).history
    assert list(h.columns) == list(runner_h.columns)
    assert len(h) == 12 and list(h["step"].unique()) == [1, 2, 3, 4, 5, 6]
    for step in range(6):
        rows = h[h["step"] == step + 1].set_index("task")
        for t, name in enumerate(NAMES):
            assert rows.loc[name, "norm"] == pytest.approx(true_norms[step][t], rel=1e-4)
            assert rows.loc[name, "loss"] == pytest.approx(losses[step][t])
        assert rows.loc["task1", "cos_task1"] == pytest.approx(1.0)
        assert rows.loc["task1", "cos_task2"] == pytest.approx(rows.loc["task2", "cos_task1"])
    # relax=1, reference task1: weight_2 = ema_1 / ema_2 (the ema the recorder kept)
    last = h[h["step"] == 6].set_index("task")
    assert last.loc["task2", "weight"] == pytest.approx(
        last.loc["task1", "ema"] / last.loc["task2", "ema"], rel=1e-4
    )
    assert last.loc["task2", "weight"] < 0.05  # the 100x task is scaled down
    assert set(h["rule"]) == {"multibalance"}


def test_history_from_stats_equals_the_recorder_and_feeds_the_figures() -> None:
    rec, kept, losses, _ = _loop()
    h = mbviz.history_from_stats(kept, NAMES, losses=losses, rule="multibalance")
    assert h.equals(rec.history())
    fig = magnitudes_and_weights(h)
    assert {tr.name for tr in fig.data} >= {"task1 raw", "task1 EMA", "task2 weight"}
    assert len(cosine_heatmap(h).data) >= 1


def test_recorder_errors() -> None:
    rec = mbviz.StatsRecorder(NAMES)
    with pytest.raises(ValueError, match="losses must have 2 entries"):
        rec.record(None, [1.0])
    with pytest.raises(ValueError, match="distinct"):
        mbviz.StatsRecorder(["a", "a"])
    with pytest.raises(ValueError, match="losses must have one entry per step"):
        mbviz.history_from_stats([None, None], NAMES, losses=[[1.0, 2.0]])
    rec.record(None, [1.0, 2.0])  # no balancer: weights 1, norms NaN
    assert rec.history()["weight"].tolist() == [1.0, 1.0]
