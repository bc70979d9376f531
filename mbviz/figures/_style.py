"""Shared colours and layout for the mbviz figures."""

from __future__ import annotations

from typing import Any

import plotly.express as px

TASK_COLORS = px.colors.qualitative.D3
RULE_COLORS = px.colors.qualitative.Bold
TEMPLATE = "plotly_white"


def task_color(i: int) -> str:
    return TASK_COLORS[i % len(TASK_COLORS)]


def rule_color(i: int) -> str:
    return RULE_COLORS[i % len(RULE_COLORS)]


def base_layout(title: str, **kwargs: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title},
        "template": TEMPLATE,
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "legend": {"orientation": "v"},
    }
    layout.update(kwargs)
    return layout
