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


def fixed_cost(table, *, baseline: str = "sum", height: int = 400) -> go.Figure:
    """Bars of each method's time per step beyond the plain sum (µs, with the 90 %
    interval), grouped by model size, labelled with the ratio of steps/s to the sum.

    ``table``: the benchmark's rows (:func:`mbviz.dlrm_throughput.run_throughput`) as a
    DataFrame with columns ``size`` (a label per model size), ``method``,
    ``overhead_us``, ``overhead_us_90`` and ``ratio_vs_sum_paired``; the rows of
    ``baseline`` (the plain sum's method name) are left out.
    """
    rows = table[table["method"] != baseline]
    if len(rows) == 0:
        raise ValueError(f"fixed_cost needs rows of at least one method besides {baseline!r}")
    bars = []
    for i, (method, g) in enumerate(rows.groupby("method", sort=False)):
        low = [o - lo for o, (lo, _) in zip(g["overhead_us"], g["overhead_us_90"])]
        high = [hi - o for o, (_, hi) in zip(g["overhead_us"], g["overhead_us_90"])]
        bars.append(
            go.Bar(
                x=list(g["size"]),
                y=list(g["overhead_us"]),
                error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
                marker_color=rule_color(i),
                text=[f"{r:.2f}×" for r in g["ratio_vs_sum_paired"]],
                textposition="outside",
                name=method,
            )
        )
    fig = go.Figure(bars)
    fig.update_layout(
        **base_layout("Time per step beyond the plain sum (label: steps/s ratio to it)"),
        barmode="group",
        height=height,
        xaxis={"title": {"text": "model size"}},
        yaxis={"title": {"text": "µs per step beyond the plain sum"}},
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
