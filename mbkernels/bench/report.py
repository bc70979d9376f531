"""Results out: JSON (always) and a self-contained plotly HTML chart (needs plotly)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(results, indent=2, allow_nan=True) + "\n")
    return p


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as exc:  # pragma: no cover - plotly is in the [viz] extra
        raise ImportError(
            "the HTML report needs plotly: pip install 'multibalance-lab[viz]' (or plotly)"
        ) from exc
    return go, make_subplots


def figures(results: dict[str, Any]) -> list[Any]:
    """One plotly figure per benchmark present in ``results``."""
    go, make_subplots = _plotly()
    figs = []
    thr = results.get("throughput")
    if thr:
        fig = go.Figure()
        methods = sorted({r["method"] for r in thr["rows"]}, key=thr["methods"].index)
        for m in methods:
            rows = [r for r in thr["rows"] if r["method"] == m]
            fig.add_bar(
                name=m,
                x=[f"T={r['num_tasks']}" for r in rows],
                y=[r["ratio_vs_sum"] for r in rows],
            )
        fig.add_hline(y=1.0, line_dash="dot")
        fig.update_layout(
            title="Training throughput relative to the plain sum of losses (median)",
            xaxis_title="number of tasks",
            yaxis_title="steps/s ÷ plain sum",
            barmode="group",
        )
        figs.append(fig)
    op = results.get("op")
    if op:
        tasks = op["config"]["tasks"]
        fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=[f"T={t}" for t in tasks])
        methods = list(dict.fromkeys(r["method"] for r in op["rows"]))
        for j, t in enumerate(tasks, start=1):
            for m in methods:
                rows = [r for r in op["rows"] if r["num_tasks"] == t and r["method"] == m]
                fig.add_scatter(
                    x=[r["n"] for r in rows],
                    y=[r["achieved_Bps"] / 1e9 for r in rows],
                    name=m,
                    legendgroup=m,
                    showlegend=j == 1,
                    row=1,
                    col=j,
                )
            fig.add_hline(y=op["copy_bandwidth"]["median_Bps"] / 1e9, line_dash="dot", row=1, col=j)
            fig.update_xaxes(type="log", title_text="elements per task (N)", row=1, col=j)
            fig.update_yaxes(title_text="GB/s of minimum traffic", row=1, col=j)
        fig.update_layout(
            title=f"Fused op on {op['config']['device']}: achieved bandwidth "
            "(dotted: measured copy bandwidth)"
        )
        figs.append(fig)
    return figs


def write_html(results: dict[str, Any], path: str | Path) -> Path:
    """Write every figure into one self-contained HTML file (plotly.js inlined once)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
        for i, fig in enumerate(figures(results))
    ]
    env = json.dumps(results.get("environment", {}))
    p.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>mbkernels benchmarks</title>"
        f"</head><body><h1>mbkernels benchmarks</h1><pre>{env}</pre>"
        + "".join(parts)
        + "</body></html>\n"
    )
    return p
