"""Optimisation trajectories on the 2-D toy, against its analytic Pareto set and front."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..rules import label
from ._style import base_layout, rule_color, rule_dash


def toy_trajectories(toy, trajectories) -> go.Figure:
    """Two panels: the plane (contours of ``f1 + f2``, the Pareto set, each rule's path)
    and the objective space (the analytic front, each rule's path in ``(f1, f2)``).

    Args:
        toy: a :class:`mbviz.problems.QuadraticToy`.
        trajectories: a DataFrame of :meth:`QuadraticToy.trajectory` rows (several rules
            and starts concatenated; a ``start`` column, if present, separates paths).
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("parameter space", "objective space"),
        horizontal_spacing=0.12,
    )
    ps, pf = toy.pareto_set(201), toy.pareto_front(201)
    lo = np.minimum(ps.min(0), trajectories[["x", "y"]].min().to_numpy()) - 0.5
    hi = np.maximum(ps.max(0), trajectories[["x", "y"]].max().to_numpy()) + 0.5
    gx, gy = np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80)
    xx, yy = np.meshgrid(gx, gy)
    zz = toy.losses(np.stack([xx, yy], -1)).sum(-1)
    fig.add_trace(
        go.Contour(
            x=gx,
            y=gy,
            z=np.log1p(zz),
            showscale=False,
            name="log(1+f1+f2)",
            colorscale="Greys",
            opacity=0.35,
            contours={"coloring": "lines"},
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=ps[:, 0],
            y=ps[:, 1],
            mode="lines",
            name="Pareto set",
            line={"color": "black", "width": 4},
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=pf[:, 0],
            y=pf[:, 1],
            mode="lines",
            name="Pareto front",
            line={"color": "black", "width": 4},
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    key = ["rule", "start"] if "start" in trajectories.columns else ["rule"]
    rules = list(dict.fromkeys(trajectories["rule"]))
    shown: set[str] = set()
    for k, t in trajectories.groupby(key, sort=False):
        rule = k[0] if isinstance(k, tuple) else k
        c = rule_color(rules.index(rule))
        dash = rule_dash(rules.index(rule))
        first = rule not in shown
        shown.add(rule)
        fig.add_trace(
            go.Scatter(
                x=t["x"],
                y=t["y"],
                mode="lines",
                name=label(rule),
                legendgroup=rule,
                showlegend=first,
                line={"color": c, "dash": dash},
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=t["f1"],
                y=t["f2"],
                mode="lines",
                name=label(rule),
                legendgroup=rule,
                showlegend=False,
                line={"color": c, "dash": dash},
            ),
            row=1,
            col=2,
        )
    fig.update_layout(**base_layout("Optimisation paths on the two-objective toy", height=460))
    fig.update_xaxes(title_text="x₁", row=1, col=1)
    fig.update_yaxes(title_text="x₂", row=1, col=1)
    # The analytic front reaches f = 0 at its ends, which a log axis would stretch to
    # 1e-30 and squeeze the paths into a band: frame the paths (and the front near them).
    fx, fy = (_log_range(trajectories[c].to_numpy()) for c in ("f1", "f2"))
    fig.update_xaxes(title_text="f₁", type="log", range=fx, exponentformat="power", row=1, col=2)
    fig.update_yaxes(title_text="f₂", type="log", range=fy, exponentformat="power", row=1, col=2)
    return fig


def _log_range(values: np.ndarray, pad: float = 0.3) -> list[float] | None:
    """``[log10(min), log10(max)]`` of the positive finite values, padded; ``None`` if none."""
    v = values[np.isfinite(values) & (values > 0)]
    if v.size == 0:
        return None
    return [float(np.log10(v.min())) - pad, float(np.log10(v.max())) + pad]
