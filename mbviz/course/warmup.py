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
#: With ``jump_at``, the last task's loss grows by this factor from that step on.
JUMP = 10.0
#: Notebook 00's run at ``SIZE = 1``: the last task's loss jumps halfway; small batches,
#: so that each batch's norm is visibly noisy.
NOTEBOOK_RUN = {"steps": 60, "jump_at": 30, "batch_size": 16}


def train_warmup(
    relax: float = 0.7,
    beta: float = 0.9,
    steps: int = 30,
    seed: int = 0,
    *,
    jump_at: int | None = None,
    batch_size: int = 64,
) -> tuple[mbk.MultiBalance, Any]:
    """Train the tiny model; return the balancer and a DataFrame with one row per
    (step, task): ``norm`` (of dL_t/dZ), ``ema`` and ``weight``.

    ``jump_at``: from this step on the last task's loss is :data:`JUMP` times larger (a
    drifting loss scale, as when a new content type launches), so that ``beta`` shows its
    trade-off: a small ``beta`` follows the jump at once but passes every batch's noise
    into the weight, a large one is smooth but lags."""
    import pandas as pd

    torch.manual_seed(seed)
    bottom = nn.Sequential(nn.Linear(16, 8), nn.Tanh())  # shared layers -> Z
    towers = nn.ModuleList(nn.Linear(8, 1) for _ in LOSS_SCALES)
    bal = mbk.MultiBalance(num_tasks=3, beta=beta, relax=relax, reference="target", target=0)
    opt = torch.optim.Adam([*bottom.parameters(), *towers.parameters()], lr=1e-2)
    rows = []
    for step in range(steps):
        x, y = torch.randn(batch_size, 16), torch.randn(batch_size, 3)
        scales = list(LOSS_SCALES)
        if jump_at is not None and step >= jump_at:
            scales[-1] *= JUMP
        zs = bal(bottom(x))  # three views of Z, one per tower
        losses = [
            s * nn.functional.mse_loss(tower(z).squeeze(-1), y[:, t])
            for t, (s, tower, z) in enumerate(zip(scales, towers, zs))
        ]
        opt.zero_grad()
        sum(losses).backward()  # ONE backward; Z receives sum_t w_t dL_t/dZ
        opt.step()
        st = bal.stats.as_dict()  # type: ignore[union-attr]
        correction = 1.0 - beta ** (step + 1)  # what the rule divides the stored EMA by
        for t in range(len(LOSS_SCALES)):
            rows.append(
                {
                    "step": step,
                    "task": t,
                    "norm": st["norms"][t],  # type: ignore[index]
                    "ema": st["ema"][t],
                    "ema_corrected": st["ema"][t] / correction,  # type: ignore[index]
                    "weight": st["weights"][t],
                }  # type: ignore[index]
            )
    return bal, pd.DataFrame(rows)


def warmup_figure(history: Any, title: str = "MultiBalance on three badly scaled tasks") -> Any:
    """Two panels as a plotly ``go.Figure``: the weights over steps, one line per task
    (top), and the last task's gradient norm per batch with the bias-corrected EMA that the
    rule uses (bottom), both on log axes. :func:`update_warmup_figure` redraws it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..figures._style import base_layout, task_color

    last = len(LOSS_SCALES) - 1
    fig = make_subplots(
        rows=2,
        cols=1,
        vertical_spacing=0.16,
        subplot_titles=("weight w_t of each task", f"task {last}: norm per batch and its EMA"),
    )
    for t, scale in enumerate(LOSS_SCALES):
        fig.add_trace(
            go.Scatter(
                mode="lines", name=f"task {t} (loss x{scale:g})", line={"color": task_color(t)}
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            mode="lines",
            name=f"task {last}: ||g|| per batch",
            line={"color": task_color(last), "width": 1.5},
            opacity=0.75,
        ),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            mode="lines",
            name=f"task {last}: EMA (bias-corrected)",
            line={"color": "black", "width": 2.5, "dash": "dash"},
        ),
        row=2,
        col=1,
    )
    fig.update_layout(**base_layout(title, height=560))
    fig.update_yaxes(title_text="weight w_t", type="log", row=1, col=1)
    fig.update_yaxes(title_text="gradient norm on Z", type="log", row=2, col=1)
    fig.update_xaxes(title_text="training step")
    update_warmup_figure(fig, history)
    return fig


def update_warmup_figure(fig: Any, history: Any) -> None:
    """Put ``history`` (from :func:`train_warmup`) into a figure made by
    :func:`warmup_figure` (inside :meth:`mbviz.widgets.LiveFigure.hold` to draw it once)."""
    last = len(LOSS_SCALES) - 1
    h_last = history[history.task == last]
    ys = [history[history.task == t].weight.to_numpy() for t in range(len(LOSS_SCALES))]
    ys += [h_last.norm.to_numpy(), h_last.ema_corrected.to_numpy()]
    for trace, y in zip(fig.data, ys):
        trace.x = h_last.step.to_numpy()
        trace.y = y
