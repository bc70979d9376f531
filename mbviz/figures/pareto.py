"""Empirical Pareto fronts: a preference sweep, method points and single-task optima."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .. import metrics as M
from ._style import base_layout, rule_color, rule_symbol


def _metric_of(result, task: str, metric: str | None) -> float:
    kind = result.task_kinds[result.task_names.index(task)]
    return float(result.test[task][metric or M.PRIMARY_METRIC[kind]])


def nondominated(points: np.ndarray, higher: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the points no other point dominates (``higher[k]``: higher is better)."""
    s = np.asarray(points, dtype=np.float64) * np.where(np.asarray(higher), 1.0, -1.0)
    keep = np.ones(len(s), dtype=bool)
    for i in range(len(s)):
        dominated_by = np.all(s >= s[i], axis=1) & np.any(s > s[i], axis=1)
        keep[i] = not dominated_by.any()
    return keep


def pareto_front(
    sweep: Sequence,
    methods: Sequence = (),
    *,
    single_task: Mapping[str, float] | None = None,
    tasks: tuple[str, str] | None = None,
    metric: tuple[str | None, str | None] = (None, None),
) -> go.Figure:
    """Test metrics of two tasks: the preference sweep (grey line, non-dominated points
    circled), each method's runs (one colour per method, one marker per seed), and the
    single-task optima (a star where both would be reached at once, and dashed lines).

    Args:
        sweep: :class:`~mbviz.runner.RunResult` of :func:`~mbviz.runner.sweep_preferences`.
        methods: results of the rules to compare (grouped by their label).
        single_task: task -> single-task metric (:func:`~mbviz.runner.baseline_metrics`).
        tasks: the two task names (default: the first two).
        metric: metric per axis (default: AUC for binary tasks, RMSE for regression).
    """
    runs = [*sweep, *methods]
    if not runs:
        raise ValueError("pareto_front needs at least one run")
    names = runs[0].task_names
    tx, ty = tasks or (names[0], names[1])
    kinds = dict(zip(names, runs[0].task_kinds))
    mx = metric[0] or M.PRIMARY_METRIC[kinds[tx]]
    my = metric[1] or M.PRIMARY_METRIC[kinds[ty]]
    fig = go.Figure()
    if sweep:
        pts = np.array([[_metric_of(r, tx, mx), _metric_of(r, ty, my)] for r in sweep])
        order = np.argsort(pts[:, 0])
        prefs = [r.config.preference for r in sweep]
        text = [", ".join(f"{p:g}" for p in pr) if pr is not None else "" for pr in prefs]
        fig.add_trace(
            go.Scatter(
                x=pts[order, 0],
                y=pts[order, 1],
                mode="lines+markers",
                name="preference sweep",
                line={"color": "grey", "dash": "dot"},
                marker={"color": "grey", "size": 8},
                text=[text[i] for i in order],
                hovertemplate="weights %{text}<br>%{x:.4f}, %{y:.4f}<extra></extra>",
            )
        )
        keep = nondominated(pts, [M.HIGHER_IS_BETTER[mx], M.HIGHER_IS_BETTER[my]])
        fig.add_trace(
            go.Scatter(
                x=pts[keep, 0],
                y=pts[keep, 1],
                mode="markers",
                name="non-dominated (sweep)",
                marker={
                    "color": "rgba(0,0,0,0)",
                    "size": 14,
                    "line": {"color": "black", "width": 1.5},
                },
                hoverinfo="skip",
            )
        )
    groups: dict[str, list] = {}
    for r in methods:
        groups.setdefault(r.label, []).append(r)
    for i, (lab, rs) in enumerate(groups.items()):
        xs = [_metric_of(r, tx, mx) for r in rs]
        ys = [_metric_of(r, ty, my) for r in rs]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=lab,
                marker={
                    "color": rule_color(i),
                    "size": 13,
                    "symbol": rule_symbol(i),
                    "line": {"color": "white", "width": 1},
                },
                text=[f"seed {r.config.seed}" for r in rs],
                hovertemplate=lab + " %{text}<br>%{x:.4f}, %{y:.4f}<extra></extra>",
            )
        )
    if single_task:
        bx, by = float(single_task[tx]), float(single_task[ty])
        fig.add_trace(
            go.Scatter(
                x=[bx],
                y=[by],
                mode="markers",
                name="single-task optima",
                marker={
                    "symbol": "star",
                    "size": 16,
                    "color": "gold",
                    "line": {"color": "black", "width": 1},
                },
            )
        )
        fig.add_vline(x=bx, line_dash="dash", line_color="gold")
        fig.add_hline(y=by, line_dash="dash", line_color="gold")

    def axis_title(task: str, metric: str) -> str:
        better = "higher" if M.HIGHER_IS_BETTER[metric] else "lower"
        return f"{task} {metric.upper()} ({better} is better)"

    fig.update_layout(
        **base_layout(f"Trade-off between {tx} and {ty} (test)"),
        xaxis={"title": {"text": axis_title(tx, mx)}},
        yaxis={"title": {"text": axis_title(ty, my)}},
    )
    return fig
