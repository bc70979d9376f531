"""Live training monitor: per-task losses, weights and gradient cosines while training runs."""

from __future__ import annotations

import itertools
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..figures._style import base_layout, task_color
from ..problems.base import MultiTaskProblem
from ..rules import label
from ..runner import RunConfig, RunResult, StepRecord, train
from .live_figure import LiveFigure


class TrainingMonitor(W.VBox):
    """A figure that updates while :meth:`run` trains: per-task training loss,
    task weights, and the cosine of each task pair, every ``update_every`` steps.

    ``monitor = TrainingMonitor(problem, RunConfig(rule="multibalance")); monitor`` in one
    cell shows it; ``result = monitor.run()`` in the next trains and returns the
    :class:`~mbviz.runner.RunResult`. ``callback`` can also be passed to
    :func:`mbviz.runner.train` directly.
    """

    def __init__(
        self,
        problem: MultiTaskProblem,
        config: RunConfig | None = None,
        *,
        update_every: int = 10,
    ) -> None:
        self.problem = problem
        self.config = config or RunConfig()
        self.update_every = max(1, int(update_every))
        #: The rule of the run in progress (or the last one): ``run(rule=...)`` overrides the
        #: config's, and the title names the one that trains.
        self.rule = self.config.rule
        names = problem.task_names
        self.pairs = list(itertools.combinations(range(problem.num_tasks), 2))
        fig = make_subplots(
            rows=1,
            cols=3,
            subplot_titles=("training loss", "task weight", "gradient cosine"),
            horizontal_spacing=0.07,
        )
        for t, n in enumerate(names):
            c = task_color(t)
            fig.add_trace(
                go.Scatter(x=[], y=[], name=f"{n} loss", legendgroup=n, line={"color": c}),
                row=1,
                col=1,
            )
        for t, n in enumerate(names):
            fig.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    name=f"{n} weight",
                    legendgroup=n,
                    line={"color": task_color(t), "dash": "dot"},
                    showlegend=False,
                ),
                row=1,
                col=2,
            )
        for k, (a, b) in enumerate(self.pairs):
            fig.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    name=f"cos {names[a]}·{names[b]}",
                    line={"color": task_color(len(names) + k)},
                ),
                row=1,
                col=3,
            )
        fig.update_layout(
            **base_layout(
                f"{label(self.rule)}: waiting to start",
                height=420,
                legend={"orientation": "h", "y": -0.25},
                margin={"l": 60, "r": 20, "t": 70, "b": 90},
            )
        )
        fig.update_yaxes(title_text="loss", row=1, col=1)
        fig.update_yaxes(title_text="weight", row=1, col=2)
        fig.update_yaxes(title_text="cosine", range=[-1.05, 1.05], row=1, col=3)
        for col in (1, 2, 3):
            fig.update_xaxes(title_text="training step", row=1, col=col)
        self.figure = fig
        self.view = LiveFigure(fig)
        self.status = W.HTML("")
        self.result: RunResult | None = None
        self._buf: dict[int, tuple[list[float], list[float]]] = {}
        super().__init__([self.view, self.status])

    def reset(self) -> None:
        with self.view.hold():
            for tr in self.figure.data:
                tr.x, tr.y = (), ()
        self._buf = {}

    def callback(self, rec: StepRecord) -> None:
        """Record one step; redraw every ``update_every`` steps and on the last."""
        T = len(rec.task_names)
        values = [*rec.losses, *rec.weights, *(rec.cosine[a][b] for a, b in self.pairs)]
        for i, v in enumerate(values):
            xs, ys = self._buf.setdefault(i, ([], []))
            xs.append(rec.step)
            ys.append(v)
        if rec.step % self.update_every and rec.step != rec.steps:
            return
        with self.view.hold():
            for i, tr in enumerate(self.figure.data):
                xs, ys = self._buf.get(i, ([], []))
                tr.x, tr.y = tuple(xs), tuple(ys)
            self.figure.layout.title.text = (
                f"Training with {label(self.rule)}: step {rec.step}/{rec.steps}, "
                f"{1.0 / max(rec.step_time, 1e-9):.0f} steps/s"
            )
        if rec.metrics:
            txt = ", ".join(
                f"{t}: " + " ".join(f"{m} {v:.3f}" for m, v in ms.items())
                for t, ms in rec.metrics.items()
            )
            self.status.value = f"<b>step {rec.step}</b> — {txt}"
        del T

    def run(self, **overrides: Any) -> RunResult:
        """Train with the monitor's config (``overrides`` change fields); returns the result."""
        self.reset()
        self.rule = str(overrides.get("rule", self.config.rule))
        with self.view.hold():
            self.figure.layout.title.text = f"{label(self.rule)}: starting"
        self.result = train(self.problem, self.config, callback=self.callback, **overrides)
        return self.result
