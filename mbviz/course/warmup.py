"""The warm-up experiment of notebook 00: three badly scaled tasks, one MultiBalance.

Small enough to rerun on every slider move (30 steps of a 16 -> 8 -> 3 model take
a few tens of milliseconds), and written as a plain training loop on purpose:
notebook 00 shows this source to the students.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import mbkernels as mbk

#: Loss scales of the three tasks (as different as click, like and watch-time losses).
LOSS_SCALES = (1.0, 10.0, 100.0)


def train_warmup(
    relax: float = 0.7, beta: float = 0.9, steps: int = 30, seed: int = 0
) -> tuple[mbk.MultiBalance, Any]:
    """Train the tiny model; return the balancer and a DataFrame with one row per
    (step, task): ``norm`` (of dL_t/dZ), ``ema`` and ``weight``."""
    import pandas as pd

    torch.manual_seed(seed)
    bottom = nn.Sequential(nn.Linear(16, 8), nn.Tanh())  # shared layers -> Z
    towers = nn.ModuleList(nn.Linear(8, 1) for _ in LOSS_SCALES)
    bal = mbk.MultiBalance(num_tasks=3, beta=beta, relax=relax, reference="target", target=0)
    opt = torch.optim.Adam([*bottom.parameters(), *towers.parameters()], lr=1e-2)
    rows = []
    for step in range(steps):
        x, y = torch.randn(64, 16), torch.randn(64, 3)
        zs = bal(bottom(x))  # three views of Z, one per tower
        losses = [
            s * nn.functional.mse_loss(tower(z).squeeze(-1), y[:, t])
            for t, (s, tower, z) in enumerate(zip(LOSS_SCALES, towers, zs))
        ]
        opt.zero_grad()
        sum(losses).backward()  # ONE backward; Z receives sum_t w_t dL_t/dZ
        opt.step()
        st = bal.stats.as_dict()  # type: ignore[union-attr]
        for t in range(len(LOSS_SCALES)):
            rows.append(
                {
                    "step": step,
                    "task": t,
                    "norm": st["norms"][t],  # type: ignore[index]
                    "ema": st["ema"][t],
                    "weight": st["weights"][t],
                }  # type: ignore[index]
            )
    return bal, pd.DataFrame(rows)


def warmup_figure(history: Any, title: str = "MultiBalance task weights (log scale)") -> Any:
    """Weights over steps, one line per task, as a plotly ``go.Figure``."""
    import plotly.graph_objects as go

    fig = go.Figure(
        layout=go.Layout(
            title=title,
            xaxis_title="training step",
            yaxis_title="weight w_t",
            yaxis_type="log",
            height=380,
        )
    )
    for t, scale in enumerate(LOSS_SCALES):
        h = history[history.task == t]
        fig.add_scatter(x=h.step, y=h.weight, mode="lines", name=f"task {t} (loss x{scale:g})")
    return fig
