"""Raw vs moving-average gradient magnitudes, and the weights a rule derived from them."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import base_layout, task_color


def magnitudes_and_weights(
    history, *, log_y: bool = True, log_weights: bool | None = None
) -> go.Figure:
    """Two panels sharing the step axis: per-task gradient norms (faint: raw, per step;
    solid: the rule's EMA when it keeps one) and the task weights.

    ``log_weights=None`` puts the weights on a log axis when they span more than a factor
    100 (a task whose gradient vanishes gets a weight growing like ``1 / EMA`` under
    MultiBalance, which would flatten every other curve).

    Traces: ``<task> raw`` and (if present) ``<task> EMA`` in row 1, ``<task> weight`` in
    row 2.
    """
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        # room between the panels for the upper x-axis title and the lower panel's title
        vertical_spacing=0.18,
        subplot_titles=("gradient magnitude per task", "task weight"),
    )
    for i, (task, h) in enumerate(history.groupby("task", sort=False)):
        c = task_color(i)
        fig.add_trace(
            go.Scatter(
                x=h["step"],
                y=h["norm"],
                name=f"{task} raw",
                legendgroup=task,
                line={"color": c, "width": 1},
                opacity=0.35,
            ),
            row=1,
            col=1,
        )
        if h["ema"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=h["step"],
                    y=h["ema"],
                    name=f"{task} EMA",
                    legendgroup=task,
                    line={"color": c, "width": 2.5},
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=h["step"],
                y=h["weight"],
                name=f"{task} weight",
                legendgroup=task,
                line={"color": c, "width": 2},
                showlegend=True,
            ),
            row=2,
            col=1,
        )
    fig.update_layout(**base_layout("Raw vs moving-average magnitudes, and weights", height=560))
    fig.update_yaxes(title_text="‖∂L_t/∂Z‖", type="log" if log_y else "linear", row=1, col=1)
    if log_weights is None:
        w = history["weight"].abs()
        w = w[w > 0]
        log_weights = bool(len(w)) and float(w.max() / w.min()) > 100.0
    fig.update_yaxes(title_text="weight w_t", type="log" if log_weights else "linear", row=2, col=1)
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_xaxes(title_text="training step", row=1, col=1)
    return fig
