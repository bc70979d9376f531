"""A plotly figure that redraws in place and fills the notebook's width.

plotly's ``go.FigureWidget`` (an anywidget since plotly 6) sizes itself once, when it is
drawn, and in JupyterLab that happens before its output area has a width: it stays at
plotly's default 700 px however wide the notebook is, and only a window resize fixes it
(plotly.py#5208). :class:`LiveFigure` is an ``ipywidgets.Output`` that shows an ordinary
``go.Figure`` through plotly's renderer, which fills the output area like every static figure
in the course, and shows it again after each change. Changes made inside :meth:`hold`
are drawn once, when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
from IPython import get_ipython
from IPython.display import clear_output, display


class LiveFigure(W.Output):
    """``LiveFigure(fig)``: ``fig`` (a ``go.Figure``, or anything ``go.Figure`` accepts) in
    an output area that redraws it in place.

    Change the figure through :attr:`figure` inside ``with live.hold():``; the figure is
    drawn again when the block ends (nested blocks draw once, at the outermost end).
    :meth:`redraw` draws it now. Outside a running kernel (tests, scripts) nothing is
    displayed and :attr:`redraws` still counts the draws.
    """

    def __init__(self, figure: go.Figure | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout.width = "100%"
        self.figure = figure if isinstance(figure, go.Figure) else go.Figure(figure)
        self.redraws = 0
        self._held = 0
        self.redraw()

    @contextmanager
    def hold(self) -> Iterator[go.Figure]:
        """Batch changes to :attr:`figure`; draw once when the outermost block ends."""
        self._held += 1
        try:
            yield self.figure
        finally:
            self._held -= 1
            if self._held == 0:
                self.redraw()

    def redraw(self) -> None:
        """Show :attr:`figure` as it is now, replacing what was shown."""
        if self._held:
            return
        self.redraws += 1
        if get_ipython() is None:
            return
        with self:
            clear_output(wait=True)  # the old drawing goes when the new one arrives
            display(self.figure)
