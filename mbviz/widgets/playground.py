"""Gradient playground: two task gradients, sliders, and every rule's combined direction."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W
import numpy as np

from ..figures.combination import (
    DEFAULT_RULES,
    available,
    combine,
    gradient_combination,
    make_balancers,
    offered_rules,
    two_gradients,
)
from ..rules import label
from .live_figure import LiveFigure

# Inline styles: an HTML widget's table gets no padding from JupyterLab's CSS, so the
# columns would run together.
_CELL = 'style="padding: 2px 14px; text-align: right"'
_LEFT = 'style="padding: 2px 14px 2px 0; text-align: left"'


class GradientPlayground(W.VBox):
    """Angle and magnitude-ratio sliders (and MultiBalance's ``relax``); the combined
    update direction under each rule is redrawn on every slider move.

    The first slider is the angle between the two task gradients (degrees); the second the
    magnitude ratio ``||g2|| / ||g1||`` (log scale); the third MultiBalance's ``relax``.
    Under them a list offers ``rules`` (default: every installed rule); the ones selected
    (``shown``, default :data:`~mbviz.figures.combination.DEFAULT_RULES`) are drawn and only
    they are computed on a slider move. A table under the figure lists each shown rule's
    weights. ``last_update_ms`` holds the duration of the latest redraw; :meth:`set` moves
    sliders (and the selection) from code.

    Display it as the last expression of a notebook cell: ``GradientPlayground()``.
    """

    def __init__(
        self,
        rules: Sequence[str] | None = None,
        *,
        shown: Sequence[str] | None = None,
        angle: float = 120.0,
        ratio: float = 5.0,
        relax: float = 0.7,
        rule_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.rules = offered_rules() if rules is None else available(rules)
        if not self.rules:
            raise ValueError(f"none of the rules {rules!r} is installed")
        start = [r for r in (DEFAULT_RULES if shown is None else shown) if r in self.rules]
        if shown is not None and len(start) != len(shown):
            missing = sorted(set(shown) - set(self.rules))
            raise ValueError(f"shown: {missing} are not among the offered rules {self.rules}")
        self.picker = W.SelectMultiple(
            options=[(label(r), r) for r in self.rules],
            value=tuple(start),
            rows=min(len(self.rules), 9),
            description="rules shown",
            style={"description_width": "initial"},
        )
        self._rule_kwargs = {k: dict(v) for k, v in (rule_kwargs or {}).items()}
        self.angle = W.FloatSlider(
            value=angle,
            min=0.0,
            max=180.0,
            step=1.0,
            description="angle (°)",
            continuous_update=True,
        )
        self.ratio = W.FloatLogSlider(
            value=ratio,
            base=10,
            min=-1,
            max=2,
            step=0.01,
            description="‖g2‖/‖g1‖",
            continuous_update=True,
        )
        self.relax = W.FloatSlider(
            value=relax,
            min=0.0,
            max=1.0,
            step=0.05,
            description="relax (MB)",
            continuous_update=True,
        )
        self._balancers = self._make_balancers()
        self.figure = gradient_combination(two_gradients(angle, ratio), balancers=self._balancers)
        self.view = LiveFigure(self.figure)
        self.table = W.HTML()
        self.last_update_ms = 0.0
        for s in (self.angle, self.ratio):
            s.observe(self._on_change, names="value")
        self.relax.observe(self._on_relax, names="value")
        self.picker.observe(self._on_change, names="value")
        super().__init__(
            [W.HBox([self.angle, self.ratio, self.relax]), self.picker, self.view, self.table]
        )
        self.update()

    @property
    def shown(self) -> tuple[str, ...]:
        """The rules drawn now, in the order of :attr:`rules`."""
        chosen = set(self.picker.value)
        return tuple(r for r in self.rules if r in chosen)

    def _make_balancers(self):  # type: ignore[no-untyped-def]
        kw = {k: dict(v) for k, v in self._rule_kwargs.items()}
        kw.setdefault("multibalance", {})["relax"] = float(self.relax.value)
        return make_balancers(self.rules, 2, kw)

    def _on_relax(self, _change: Any) -> None:
        if "multibalance" in self._balancers:
            self._balancers["multibalance"] = self._make_balancers()["multibalance"]
        self.update()

    def _on_change(self, _change: Any) -> None:
        self.update()

    def set(
        self,
        *,
        angle: float | None = None,
        ratio: float | None = None,
        relax: float | None = None,
        shown: Sequence[str] | None = None,
    ) -> None:
        """Move the sliders or change the selection (each change redraws, exactly as a
        user's drag or click does)."""
        if shown is not None:
            unknown = sorted(set(shown) - set(self.rules))
            if unknown:
                raise ValueError(f"shown: {unknown} are not among the offered rules {self.rules}")
            self.picker.value = tuple(shown)
        if angle is not None:
            self.angle.value = angle
        if ratio is not None:
            self.ratio.value = ratio
        if relax is not None:
            self.relax.value = relax

    def results(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Shown rule -> (weights, combined direction) for the current sliders."""
        g = two_gradients(self.angle.value, self.ratio.value)
        return combine(g, {r: self._balancers[r] for r in self.shown})

    def update(self) -> None:
        """Recompute the shown rules' combinations and redraw (one batched figure update)."""
        t0 = time.perf_counter()
        g = two_gradients(self.angle.value, self.ratio.value)
        res = combine(g, {r: self._balancers[r] for r in self.shown})
        lim = 1.15 * max(
            float(np.abs(g).max()),
            max((float(np.abs(d).max()) for _, d in res.values()), default=0),
        )
        # hidden rules keep their trace (and colour) with no points
        arrows = [res[r][1] if r in res else None for r in self.rules]
        xs = [[0.0, g[t, 0]] for t in range(2)] + [[] if d is None else [0.0, d[0]] for d in arrows]
        ys = [[0.0, g[t, 1]] for t in range(2)] + [[] if d is None else [0.0, d[1]] for d in arrows]
        hover = [self.figure.data[t].hovertemplate for t in range(2)] + [
            f"{label(r)}<br>w = ({res[r][0][0]:.2f}, {res[r][0][1]:.2f})<extra></extra>"
            if r in res
            else ""
            for r in self.rules
        ]
        visible = [True, True] + [r in res for r in self.rules]
        # One low-level restyle and one relayout message: the validated property setters
        # cost ~5 ms per trace, this ~1 ms for the whole figure.
        with self.view.hold():
            self.figure.plotly_restyle(
                {"x": xs, "y": ys, "hovertemplate": hover, "visible": visible}
            )
            self.figure.plotly_relayout({"xaxis.range": [-lim, lim], "yaxis.range": [-lim, lim]})
        rows = "".join(
            f"<tr><td {_LEFT}>{label(n)}</td><td {_CELL}>{w[0]:.3f}</td>"
            f"<td {_CELL}>{w[1]:.3f}</td>"
            f"<td {_CELL}>{np.degrees(np.arctan2(d[1], d[0])):.0f}°</td>"
            f"<td {_CELL}>{np.linalg.norm(d):.3f}</td></tr>"
            for n, (w, d) in res.items()
        )
        head = "".join(f"<th {_CELL}>{h}</th>" for h in ("w1", "w2", "direction", "length"))
        self.table.value = (
            f'<table style="border-collapse: collapse"><tr><th {_LEFT}>rule</th>{head}</tr>'
            f"{rows}</table>"
        )
        self.last_update_ms = 1000.0 * (time.perf_counter() - t0)
