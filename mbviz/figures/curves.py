"""Per-task learning curves of several runs."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import base_layout, rule_color, rule_dash


def learning_curves(
    results: Sequence, *, split: str | None = None, metric: str | None = None, smooth: int = 10
) -> go.Figure:
    """One panel per task, one line per run.

    With ``split=None`` the training loss per step (rolling mean over ``smooth`` steps);
    with ``split="val"`` the evaluated ``metric`` (default: the task's primary metric) at
    each evaluation of the run (use ``eval_every`` in the run config).
    """
    from .. import metrics as M

    if not results:
        raise ValueError("learning_curves needs at least one run")
    tasks = results[0].task_names
    kinds = results[0].task_kinds
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, horizontal_spacing=0.07)
    labels = list(dict.fromkeys(r.label for r in results))
    for r in results:
        i = labels.index(r.label)
        first = True
        for j, task in enumerate(tasks):
            if split is None:
                h = r.history[r.history["task"] == task]
                x = h["step"]
                y = h["loss"].rolling(max(1, smooth), min_periods=1).mean()
            else:
                m = metric or M.PRIMARY_METRIC[kinds[j]]
                e = r.evals[
                    (r.evals["task"] == task)
                    & (r.evals["split"] == split)
                    & (r.evals["metric"] == m)
                ]
                x, y = e["step"], e["value"]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines" if split is None else "lines+markers",
                    name=r.label,
                    legendgroup=r.label,
                    showlegend=first
                    and r.config.seed == min(q.config.seed for q in results if q.label == r.label),
                    line={"color": rule_color(i), "dash": rule_dash(i)},
                    opacity=0.9,
                ),
                row=1,
                col=j + 1,
            )
            first = False
    ylab = "training loss" if split is None else f"{split} metric"
    fig.update_layout(**base_layout("Per-task learning curves", height=380))
    for j in range(len(tasks)):
        fig.update_xaxes(title_text="training step", row=1, col=j + 1)
        yl = ylab if split is None else f"{split} {(metric or M.PRIMARY_METRIC[kinds[j]]).upper()}"
        fig.update_yaxes(title_text=yl, row=1, col=j + 1)
    return fig
