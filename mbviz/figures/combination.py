"""Per-rule combination of two task gradients in the plane (the gradient playground)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from mbkernels import Balancer

from ..rules import label, make_balancer, rule_names
from ._style import base_layout, rule_color, rule_dash, task_grey

#: Rules the playground shows by default (those of them that are installed).
DEFAULT_RULES = (
    "equal",
    "multibalance",
    "mgda_ub",
    "pcgrad",
    "imtl_g",
    "cagrad",
    "aligned_mtl",
    "max_norm",
)


def offered_rules() -> list[str]:
    """Every installed rule the playground can show: all of :func:`rule_names` except
    ``linear`` (with its default preferences it is ``equal``)."""
    return [r for r in rule_names() if r != "linear"]


def available(rules: Sequence[str] | None = None) -> list[str]:
    """``rules`` (default :data:`DEFAULT_RULES`) restricted to the installed ones."""
    known = set(rule_names())
    return [r for r in (rules or DEFAULT_RULES) if r in known]


def two_gradients(angle: float, ratio: float) -> np.ndarray:
    """``[2, 2]``: ``g_1 = (1, 0)`` and ``g_2`` of length ``ratio`` at ``angle`` degrees."""
    a = math.radians(angle)
    return np.array([[1.0, 0.0], [ratio * math.cos(a), ratio * math.sin(a)]])


def combine(
    grads: np.ndarray,
    balancers: Mapping[str, Balancer],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rule name -> (weights ``[T]``, combined gradient ``sum_t w_t g_t``) for ``grads [T, d]``.

    Each balancer is reset first: this is the rule's first step on these gradients (for
    MultiBalance the bias-corrected EMA then equals the norms).
    """
    g = np.asarray(grads, dtype=np.float64)
    gram = torch.as_tensor(g @ g.T, dtype=torch.float32)
    out = {}
    for name, bal in balancers.items():
        bal.reset()
        w = bal.step_weights(gram).double().numpy()
        out[name] = (w, w @ g)
    return out


def make_balancers(
    rules: Sequence[str],
    num_tasks: int = 2,
    rule_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Balancer]:
    kw = rule_kwargs or {}
    return {r: make_balancer(r, num_tasks, **dict(kw.get(r, {}))) for r in rules}


def _arrow(x: float, y: float) -> dict[str, Any]:
    return {"x": [0.0, x], "y": [0.0, y]}


def gradient_combination(
    grads: np.ndarray | None = None,
    *,
    angle: float = 120.0,
    ratio: float = 5.0,
    rules: Sequence[str] | None = None,
    rule_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    balancers: Mapping[str, Balancer] | None = None,
) -> go.Figure:
    """Two task gradients and the combined update direction under each rule.

    Args:
        grads: ``[2, 2]`` task gradients; default :func:`two_gradients` of ``angle, ratio``.
        rules: rule names (default: every installed rule of :data:`DEFAULT_RULES`).
        rule_kwargs: per-rule hyperparameters, e.g. ``{"multibalance": {"relax": 0.7}}``.

    Traces: one per task gradient (named ``g1``, ``g2``), then one per rule (named by its
    label). Hover shows the weights.
    """
    g = two_gradients(angle, ratio) if grads is None else np.asarray(grads, dtype=np.float64)
    if g.shape != (2, 2):
        raise ValueError(f"grads must have shape (2, 2), got {g.shape}")
    if balancers is None:
        balancers = make_balancers(available(rules), 2, rule_kwargs)
    res = combine(g, balancers)
    fig = go.Figure()
    for t in range(2):
        fig.add_trace(
            go.Scatter(
                **_arrow(*g[t]),
                mode="lines+markers",
                name=f"g{t + 1} (task {t + 1})",
                line={"color": task_grey(t), "width": 5, "dash": "solid" if t == 0 else "dash"},
                marker={"symbol": "arrow", "angleref": "previous", "size": [0, 18]},
                hovertemplate=f"g{t + 1} = (%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
            )
        )
    for i, (name, (w, d)) in enumerate(res.items()):
        fig.add_trace(
            go.Scatter(
                **_arrow(*d),
                mode="lines+markers",
                name=label(name),
                line={"color": rule_color(i), "width": 2.5, "dash": rule_dash(i)},
                marker={"symbol": "arrow", "angleref": "previous", "size": [0, 13]},
                hovertemplate=f"{label(name)}<br>w = ({w[0]:.2f}, {w[1]:.2f})<extra></extra>",
            )
        )
    lim = 1.15 * max(float(np.abs(g).max()), max(float(np.abs(d).max()) for _, d in res.values()))
    fig.update_layout(
        **base_layout("Combined update direction per rule", height=480),
        xaxis={"title": {"text": "gradient component 1"}, "range": [-lim, lim], "zeroline": True},
        yaxis={
            "title": {"text": "gradient component 2"},
            "range": [-lim, lim],
            "scaleanchor": "x",
            "zeroline": True,
        },
    )
    return fig
