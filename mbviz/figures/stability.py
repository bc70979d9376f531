"""Figures for the stability explorer: weight traces per beta and a variability map."""

from __future__ import annotations

import plotly.graph_objects as go

from ._style import base_layout, rule_color, rule_dash


def stability_traces(series, *, task: str | None = None) -> go.Figure:
    """Weight of ``task`` (default: the last task) over mini-batches, one line per beta in
    ``series`` (concatenated :func:`mbviz.stability.weight_series` frames)."""
    tasks = list(dict.fromkeys(series["task"]))
    task = task or tasks[-1]
    fig = go.Figure()
    for i, (beta, s) in enumerate(series[series["task"] == task].groupby("beta", sort=False)):
        sd = float(s["weight"].std())
        fig.add_trace(
            go.Scatter(
                x=s["step"],
                y=s["weight"],
                mode="lines",
                name=f"beta = {beta:g} (std {sd:.3f})",
                line={"color": rule_color(i), "dash": rule_dash(i)},
            )
        )
    fig.update_layout(
        **base_layout(f"MultiBalance weight of {task} on fresh mini-batches, fixed model"),
        xaxis={"title": {"text": "mini-batch"}},
        yaxis={"title": {"text": f"weight of {task}"}},
    )
    return fig


def variance_heatmap(table, *, task: str | None = None) -> go.Figure:
    """Weight standard deviation per (beta, batch size) from
    :func:`mbviz.stability.weight_variability`."""
    tasks = list(dict.fromkeys(table["task"]))
    task = task or tasks[-1]
    t = table[table["task"] == task].pivot(index="beta", columns="batch_size", values="weight_std")
    fig = go.Figure(
        go.Heatmap(
            z=t.to_numpy(),
            x=[str(c) for c in t.columns],
            y=[f"{b:g}" for b in t.index],
            colorscale="Viridis",
            colorbar={"title": {"text": "weight std"}},
            hovertemplate="batch %{x}<br>beta %{y}<br>std %{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        **base_layout(f"Weight noise of {task}: moving average vs batch size"),
        xaxis={"title": {"text": "batch size"}, "type": "category"},
        yaxis={"title": {"text": "beta (EMA factor)"}, "type": "category"},
    )
    return fig
