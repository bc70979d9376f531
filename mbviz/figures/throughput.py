"""Training throughput per method, relative to the plain sum of losses."""

from __future__ import annotations

import plotly.graph_objects as go

from ._style import base_layout, rule_color


def throughput_bars(table, *, baseline: str | None = None) -> go.Figure:
    """Bars of training steps per second per method, labelled with the ratio to
    ``baseline`` (default: the first method).

    ``table``: a DataFrame with columns ``method`` and ``steps_per_s`` (as returned by
    :func:`mbviz.throughput.measure_throughput`), optionally ``std``. When no ``baseline`` is
    given and the table has its own ratio column (``ratio_vs_sum_paired``, the benchmark's
    median of per-round ratios, or ``ratio``), the labels show that column, so that they
    read the same as the table printed beside the figure.
    """
    if len(table) == 0:
        raise ValueError("throughput_bars needs at least one row")
    methods = list(table["method"])
    base = baseline or methods[0]
    ref = float(table.loc[table["method"] == base, "steps_per_s"].iloc[0])
    own = next((c for c in ("ratio_vs_sum_paired", "ratio") if c in table.columns), None)
    ratio = table[own] if baseline is None and own else table["steps_per_s"] / ref
    fig = go.Figure(
        go.Bar(
            x=methods,
            y=table["steps_per_s"],
            error_y={"array": table["std"]} if "std" in table.columns else None,
            marker_color=[rule_color(i) for i in range(len(methods))],
            text=[f"{r:.2f}×" for r in ratio],
            textposition="outside",
            name="steps/s",
        )
    )
    fig.update_layout(
        **base_layout(f"Training throughput (ratio to {base})"),
        xaxis={"title": {"text": "method"}},
        yaxis={"title": {"text": "training steps per second"}},
        showlegend=False,
    )
    return fig


def throughput_ratios(table, *, height: int = 380) -> go.Figure:
    """Lines of each method's steps/s relative to the plain sum, against the task count.

    ``table``: the benchmark's rows (:func:`mbviz.dlrm_throughput.run_throughput`)
    as a DataFrame with columns ``method``, ``T`` and ``ratio_vs_sum_paired``.
    """
    return go.Figure(
        [
            go.Scatter(x=g["T"], y=g["ratio_vs_sum_paired"], mode="lines+markers", name=m)
            for m, g in table.groupby("method", sort=False)
        ],
        layout=go.Layout(
            title="Training throughput relative to the plain sum of losses",
            xaxis_title="number of tasks T",
            yaxis_title="steps/s relative to plain sum",
            yaxis_range=[0, 1.3],
            height=height,
        ),
    )
