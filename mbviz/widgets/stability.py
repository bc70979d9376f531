"""Stability explorer: how beta and the batch size set the noise in MultiBalance's weights."""

from __future__ import annotations

from typing import Any

import ipywidgets as W

from ..figures.stability import stability_traces
from ..problems.base import MultiTaskProblem
from ..stability import default_problem, warmed_up_model, weight_series
from .live_figure import LiveFigure


class StabilityExplorer(W.VBox):
    """Sliders for ``beta`` and the batch size; the weight of the last task over fresh
    mini-batches at fixed parameters, with the moving average (``beta``) and without it
    (``beta = 0``), on the same batches. The title gives both standard deviations.

    Args:
        problem: default :func:`mbviz.stability.default_problem` (noisy, unequal tasks).
        steps: mini-batches per curve.
    """

    BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512)

    def __init__(
        self,
        problem: MultiTaskProblem | None = None,
        *,
        beta: float = 0.9,
        batch_size: int = 32,
        steps: int = 100,
        seed: int = 0,
    ) -> None:
        self.problem = problem or default_problem()
        self.model = warmed_up_model(self.problem, seed=seed)
        self.steps, self.seed = steps, seed
        self.beta = W.FloatSlider(
            value=beta, min=0.0, max=0.99, step=0.01, description="beta", continuous_update=False
        )
        self.batch_size = W.SelectionSlider(
            options=self.BATCH_SIZES,
            value=batch_size,
            description="batch size",
            continuous_update=False,
        )
        self.figure = stability_traces(self._series())
        self.view = LiveFigure(self.figure)
        self.beta.observe(self._on_change, names="value")
        self.batch_size.observe(self._on_change, names="value")
        super().__init__([W.HBox([self.beta, self.batch_size]), self.view])

    def _series(self):  # type: ignore[no-untyped-def]
        import pandas as pd

        kw: dict[str, Any] = {
            "batch_size": int(self.batch_size.value),
            "steps": self.steps,
            "seed": self.seed,
        }
        return pd.concat(
            [
                weight_series(self.problem, self.model, beta=0.0, **kw),
                weight_series(self.problem, self.model, beta=float(self.beta.value), **kw),
            ],
            ignore_index=True,
        )

    def _on_change(self, _change: Any) -> None:
        self.update()

    def update(self) -> None:
        """Recompute both curves and redraw."""
        new = stability_traces(self._series())
        with self.view.hold():
            for old_tr, new_tr in zip(self.figure.data, new.data):
                old_tr.x, old_tr.y, old_tr.name = new_tr.x, new_tr.y, new_tr.name
            self.figure.layout.title = new.layout.title
