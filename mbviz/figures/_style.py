"""Shared colours, line styles and layout for the mbviz figures.

Colours come from the Okabe-Ito palette, which stays distinguishable under the common forms
of colour blindness (yellow is left out: it vanishes on white). Rules are told apart by a
dash pattern and a marker symbol as well as a colour, so that a figure still reads in
greyscale or on a projector; the task gradients in a figure with rules are drawn in greys.
"""

from __future__ import annotations

from typing import Any

OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
)
TASK_COLORS = OKABE_ITO
RULE_COLORS = OKABE_ITO
#: Greys for task vectors drawn next to rules' colours (the gradient playground).
TASK_GREYS = ("#333333", "#8C8C8C", "#5E5E5E", "#B3B3B3")
RULE_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
RULE_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "hexagon")
TEMPLATE = "plotly_white"


def task_color(i: int) -> str:
    return TASK_COLORS[i % len(TASK_COLORS)]


def task_grey(i: int) -> str:
    return TASK_GREYS[i % len(TASK_GREYS)]


def rule_color(i: int) -> str:
    return RULE_COLORS[i % len(RULE_COLORS)]


def rule_dash(i: int) -> str:
    return RULE_DASHES[i % len(RULE_DASHES)]


def rule_symbol(i: int) -> str:
    return RULE_SYMBOLS[i % len(RULE_SYMBOLS)]


def base_layout(title: str, **kwargs: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title},
        "template": TEMPLATE,
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "legend": {"orientation": "v"},
    }
    layout.update(kwargs)
    return layout
