"""Gradient-conflict monitor: cosine similarity of every task pair over training."""

from __future__ import annotations

import itertools

import plotly.graph_objects as go

from ._style import base_layout


def cosine_heatmap(history, *, every: int = 1) -> go.Figure:  # history: pandas.DataFrame
    """Heat map of the cosine between the gradients of each task pair (rows) over the
    training steps (columns), from a runner history. Red = conflict (cosine < 0).

    ``every`` keeps one step in ``every`` (for long runs).
    """
    tasks = list(dict.fromkeys(history["task"]))
    if len(tasks) < 2:
        raise ValueError("cosine_heatmap needs a history with at least two tasks")
    h = history[history["step"] % every == 0] if every > 1 else history
    steps = sorted(h["step"].unique())
    rows, labels = [], []
    for a, b in itertools.combinations(tasks, 2):
        series = h[h["task"] == a].set_index("step")[f"cos_{b}"].reindex(steps)
        rows.append(series.to_numpy())
        labels.append(f"{a} · {b}")
    fig = go.Figure(
        go.Heatmap(
            z=rows,
            x=steps,
            y=labels,
            zmin=-1,
            zmax=1,
            zmid=0,
            colorscale="RdBu",
            colorbar={"title": {"text": "cosine"}},
            hovertemplate="step %{x}<br>%{y}<br>cos %{z:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        **base_layout("Cosine similarity of task gradients over training"),
        xaxis={"title": {"text": "training step"}},
        yaxis={"title": {"text": "task pair"}},
    )
    return fig
