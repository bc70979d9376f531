"""Figures of a paired multi-seed study (:mod:`mbviz.study`): curves over the varied
parameter, and each method's paired difference to the plain sum with its interval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..rules import label
from ..study import bootstrap_ci, higher_is_better
from ._style import base_layout, rule_color, rule_dash, rule_symbol


def _method_label(method: str) -> str:
    return "single-task" if method == "single-task" else label(method)


def _methods(runs: Any, methods: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(runs["method"]))
    chosen = present if methods is None else [m for m in methods if m in present]
    return [m for m in chosen if m != "single-task"]


def _metric_title(metric: str) -> str:
    name = "Δm %" if metric == "delta_m" else metric
    return f"{name} ({'higher' if higher_is_better(metric) else 'lower'} is better)"


def study_curves(
    runs: Any,
    *,
    metric: str = "delta_m",
    methods: Sequence[str] | None = None,
    highlight: str | None = None,
    marker: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """The mean of ``metric`` over seeds against the varied parameter, one line per method.

    Args:
        runs: a study's run table of one dataset and question (``Study.runs`` or the CSV
            read back); the single-task rows are left out.
        metric: a metric column, default ``delta_m``.
        methods: which methods, in this order (default: all, in table order).
        highlight: draw this method bold and the others faint.
        marker: a vertical line at this parameter value.

    Error bars: the percentile-bootstrap 95 % interval of the mean over seeds. Traces are
    named by the methods' labels, in order.
    """
    if metric not in runs.columns:
        raise ValueError(f"metric {metric!r} is not a column of the run table")
    table = runs[runs["method"] != "single-task"]
    param = str(table["param"].iloc[0]) if len(table) else "value"
    fig = go.Figure()
    for i, method in enumerate(_methods(table, methods)):
        rows = table[table["method"] == method]
        xs, ys, lo, hi = [], [], [], []
        for value, g in rows.groupby("value", sort=True):
            v = g[metric].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            low, high = bootstrap_ci(v)
            xs.append(float(value))
            ys.append(float(v.mean()))
            lo.append(ys[-1] - low)
            hi.append(high - ys[-1])
        faint = highlight is not None and method != highlight
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=_method_label(method),
                line={
                    "color": rule_color(i),
                    "dash": rule_dash(i),
                    "width": 1 if faint else (4 if highlight else 2.5),
                },
                marker={"symbol": rule_symbol(i), "size": 6 if faint else 9},
                opacity=0.35 if faint else 1.0,
                error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                hovertemplate=f"{_method_label(method)}<br>{param} = %{{x}}<br>"
                f"{metric} = %{{y:.4g}}<extra></extra>",
            )
        )
    if marker is not None:
        fig.add_vline(x=marker, line={"color": "#888888", "dash": "dot"})
    fig.update_layout(
        **base_layout(title or f"{metric} against {param}, mean of the seeds (95 % interval)"),
        xaxis={"title": {"text": param}},
        yaxis={"title": {"text": _metric_title(metric)}},
    )
    return fig


def paired_bars(
    summary: Any,
    *,
    metric: str = "delta_m",
    value: float | None = None,
    methods: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Each method minus the plain sum, paired by seed: the mean difference with its 95 %
    bootstrap interval, and the sign test's p-value and wins:losses over the bar.

    Args:
        summary: :func:`mbviz.study.paired_summary` of one dataset and question.
        metric: the metric compared.
        value: the varied parameter's value to show (default: the summary's only one).
        methods: which methods, in this order (default: all in the summary).
    """
    rows = summary[summary["metric"] == metric]
    if rows.empty:
        raise ValueError(f"metric {metric!r} is not in the summary")
    values = sorted(set(rows["value"].dropna()))
    if value is None:
        if len(values) > 1:
            raise ValueError(f"value: choose one of {values}")
    else:
        rows = rows[np.isclose(rows["value"].astype(float), float(value))]
        if rows.empty:
            raise ValueError(f"value must be one of {values}, got {value}")
    order = _methods(rows, methods)
    rows = rows.set_index("method").loc[order]
    better_up = bool(rows["higher_is_better"].iloc[0])
    names = [_method_label(m) for m in order]
    diff = rows["diff_mean"].to_numpy(dtype=float)
    fig = go.Figure(
        go.Bar(
            x=names,
            y=diff,
            marker={"color": [rule_color(i + 1) for i in range(len(order))]},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": rows["ci_high"].to_numpy(dtype=float) - diff,
                "arrayminus": diff - rows["ci_low"].to_numpy(dtype=float),
            },
            text=[
                f"p={p:.3g}<br>{w}:{lo}"
                for p, w, lo in zip(rows["sign_p"], rows["wins"], rows["losses"])
            ],
            textposition="outside",
            hovertemplate="%{x}: %{y:.4g}<br>%{text}<extra></extra>",
        )
    )
    fig.add_hline(y=0.0, line={"color": "#333333"})
    where = "" if value is None else f" at {rows['param'].iloc[0]} = {value:g}"
    fig.update_layout(
        **base_layout(title or f"{metric}: method − plain sum, paired by seed{where}"),
        xaxis={"title": {"text": "method"}},
        yaxis={
            "title": {
                "text": f"difference to the plain sum ({'higher' if better_up else 'lower'}"
                " is better)"
            }
        },
        showlegend=False,
    )
    return fig


def tuning_curve(
    curve: Any,
    runs: Any,
    *,
    methods: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """The static-weight search against the balancers, on one dataset.

    Args:
        curve: :func:`mbviz.study.search_curve` of one dataset: the mean test Δm% of the
            validation-selected static weights after ``runs`` search runs, with its interval.
        runs: the tuning question's run table of the same dataset; each method other than
            the static candidates is drawn as a horizontal line at its mean test Δm%.
        methods: which of those methods (default: all in the table).

    Traces: the search's band (interval) and its mean line, then one line per method.
    """
    x = curve["runs"].to_numpy(dtype=float)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=np.concatenate([x, x[::-1]]),
            y=np.concatenate([curve["ci_high"], curve["ci_low"][::-1]]),
            fill="toself",
            fillcolor="rgba(120,120,120,0.2)",
            line={"width": 0},
            hoverinfo="skip",
            name="static weights, 95 % interval",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=curve["mean"],
            mode="lines+markers",
            name="best static weights on validation",
            line={"color": "#333333", "width": 3},
            hovertemplate="%{x} search runs: test Δm% %{y:.3g}<extra></extra>",
        )
    )
    # the search's own rows: its candidates and its final pick (the curve's last point)
    table = runs[~runs["method"].isin(["static", "static_search", "single-task"])]
    for i, method in enumerate(_methods(table, methods)):
        mean = float(table.loc[table["method"] == method, "delta_m"].mean())
        fig.add_trace(
            go.Scatter(
                x=[x.min(), x.max()],
                y=[mean, mean],
                mode="lines",
                name=f"{_method_label(method)} (1 run)",
                line={"color": rule_color(i), "dash": rule_dash(i), "width": 2},
                hovertemplate=f"{_method_label(method)}: test Δm% {mean:.3g}<extra></extra>",
            )
        )
    fig.update_layout(
        **base_layout(title or "Searching static loss weights vs balancing once"),
        xaxis={"title": {"text": "training runs of the search (chosen on validation)"}},
        yaxis={"title": {"text": "test Δm % (higher is better)"}},
    )
    return fig


def sparse_tasks(
    runs: Any, *, methods: Sequence[str] | None = None, title: str | None = None
) -> go.Figure:
    """A rare task next to dense ones, on one dataset: each task's gradient norm on Z
    (mean over training and seeds), its balance weight, and the binary tasks' NE.

    Three panels of grouped bars, one group per task and one bar per method (the run
    table's ``"<task> grad_norm"``, ``"<task> weight"`` and ``"<task> ne"`` columns).
    """
    from plotly.subplots import make_subplots

    tasks = [c[: -len(" weight")] for c in runs.columns if c.endswith(" weight")]
    binary = [t for t in tasks if f"{t} ne" in runs.columns]
    panels = (
        ("grad_norm", "gradient norm on Z", tasks),
        ("weight", "weight", tasks),
        ("ne", "NE (lower is better)", binary),
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels])
    table = runs[runs["method"] != "single-task"]
    for i, method in enumerate(_methods(table, methods)):
        rows = table[table["method"] == method]
        for col, (suffix, _, names) in enumerate(panels, start=1):
            fig.add_trace(
                go.Bar(
                    x=names,
                    y=[float(rows[f"{t} {suffix}"].mean()) for t in names],
                    name=_method_label(method),
                    legendgroup=method,
                    showlegend=col == 1,
                    marker={"color": rule_color(i)},
                    hovertemplate=f"{_method_label(method)}<br>%{{x}}: %{{y:.4g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(
        **base_layout(title or "A rare task next to dense ones", height=420), barmode="group"
    )
    return fig
