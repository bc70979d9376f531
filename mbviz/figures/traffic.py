"""Memory traffic of one balancing step, fused against a naive composition."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from ..course.traffic import bytes_moved


def traffic_bars(n: int, dtype: str = "float32", tasks: Sequence[int] = range(1, 9)) -> go.Figure:
    """Megabytes moved per step for ``n`` elements per task gradient, per task count."""
    x = list(tasks)
    return go.Figure(
        [
            go.Bar(x=x, y=[bytes_moved(t, n, dtype, method) / 1e6 for t in x], name=method)
            for method in ("fused", "naive")
        ],
        layout=go.Layout(
            title=f"Memory traffic of one balancing step, N = {n:,} {dtype}",
            xaxis_title="number of tasks T",
            yaxis_title="bytes moved (MB)",
            barmode="group",
        ),
    )
