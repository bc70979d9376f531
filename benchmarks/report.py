"""Results out: JSON (always) and a self-contained plotly HTML chart (needs plotly)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from mbviz.timing import format_interval


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


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def markdown(results: dict[str, Any]) -> str:
    """Markdown tables of the results (what docs/benchmarks.md shows)."""
    out: list[str] = []
    env = results.get("environment", {})
    out.append(
        f"torch {env.get('torch')}, {env.get('threads')} CPU thread(s), "
        f"device {env.get('device')}"
        + (f" ({env['gpu']})" if env.get("gpu") else "")
        + (f"; allocator: {env['allocator']}" if env.get("allocator") else "")
    )
    thr = results.get("throughput")
    if thr:
        c = thr["config"]
        out += [
            "",
            f"Training throughput, batch {c['batch']}, |Z| = {c['z_shape'][0]}×{c['z_shape'][1]}, "
            f"{c['rounds']} interleaved rounds; ratio = steps/s ÷ plain sum's: median of the "
            "per-round ratios (paired) with its 90 % bootstrap interval over the rounds, "
            "ratio of the medians, ratio of the fastest rounds; "
            "memory: peak extra bytes of one step over the plain "
            "sum, whole step and towers + balancing alone, in units of |Z|.",
            "",
            "| T | method | steps/s | paired | 90 % interval | medians | fastest | peak MiB | "
            "step extra ÷ size(Z) | head extra ÷ size(Z) |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in thr["rows"]:
            peak = r.get("peak_step_bytes")
            interval = format_interval(r.get("ratio_vs_sum_paired_90"))
            out.append(
                f"| {r['num_tasks']} | {r['method']} | {r['steps_per_s']:.2f} | "
                f"{r['ratio_vs_sum_paired']:.3f} | {interval} | "
                f"{r['ratio_vs_sum']:.3f} | "
                f"{r['ratio_vs_sum_best']:.3f} | "
                f"{_fmt(peak / 2**20 if peak is not None else None, '.1f')} | "
                f"{_fmt(r.get('extra_vs_sum_in_z'), '.2f')} | "
                f"{_fmt(r.get('head_extra_vs_sum_in_z'), '.2f')} |"
            )
    small = results.get("throughput_small")
    if small:
        c = small["config"]
        out += [
            "",
            f"Small models on cpu, {c['threads']} thread(s), {c['rounds']} interleaved rounds; "
            "ratio = steps/s ÷ plain sum's (median of per-round ratios, 90 % bootstrap "
            "interval); overhead = µs per step beyond the plain sum (median of per-round "
            "differences, 90 % interval).",
            "",
            "| model | T | method | steps/s | paired | 90 % interval | overhead µs "
            "| 90 % interval |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in small["rows"]:
            lo, hi = r["overhead_us_90"]
            out.append(
                f"| {r['model']} | {r['num_tasks']} | {r['method']} | {r['steps_per_s']:.1f} | "
                f"{r['ratio_vs_sum_paired']:.3f} | {format_interval(r['ratio_vs_sum_paired_90'])} "
                f"| {r['overhead_us']:.0f} | {lo:.0f}–{hi:.0f} |"
            )
        pieces = ("pass1", "rule", "pass2", "statistics", "plumbing", "combine")
        out += [
            "",
            "MultiBalance's overhead piece by piece, µs per step (median over timed steps; "
            "plumbing = overhead − combine):",
            "",
            "| model | T | " + " | ".join(pieces) + " |",
            "| --- | ---: |" + " ---: |" * len(pieces),
        ]
        for r in small["rows"]:
            b = r.get("breakdown_us")
            if b:
                out.append(
                    f"| {r['model']} | {r['num_tasks']} | "
                    + " | ".join(f"{b[p]:.0f}" for p in pieces)
                    + " |"
                )
    op = results.get("op")
    if op:
        c = op["config"]
        cb = op["copy_bandwidth"]
        out += [
            "",
            f"Fused op on {c['device']} ({c['dtype']}), {c['rounds']} interleaved rounds, median; "
            f"bandwidth = minimum traffic (2T+1)·N·itemsize ÷ time; copy = bandwidth (read + "
            "write) of a copy of one N-element gradient timed in the same rounds (from cache "
            "at small N); of copy = bandwidth ÷ one large copy measured once: "
            f"{cb['median_Bps'] / 1e9:.1f} GB/s (fastest round {cb['best_Bps'] / 1e9:.1f} GB/s).",
            "",
            "| T | N | method | median ms | GB/s | copy GB/s | of copy | vs naive | vs compiled |",
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in op["rows"]:
            out.append(
                f"| {r['num_tasks']} | 2^{r['log2_n']} | {r['method']} | "
                f"{r['median_s'] * 1e3:.3f} | {r['achieved_Bps'] / 1e9:.2f} | "
                f"{r['copy_Bps'] / 1e9:.2f} | "
                f"{r['fraction_of_copy']:.0%} | {r['speedup_vs_naive']:.2f}× | "
                f"{_fmt(r['speedup_vs_compiled'], '.2f')}"
                f"{'×' if r['speedup_vs_compiled'] else ''} |"
            )
    return "\n".join(out) + "\n"


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
                y=[r["ratio_vs_sum_paired"] for r in rows],
            )
        fig.add_hline(y=1.0, line_dash="dot")
        fig.update_layout(
            title="Training throughput relative to the plain sum of losses "
            "(median of per-round ratios)",
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
            copy_rows = [r for r in op["rows"] if r["num_tasks"] == t and r["method"] == "naive"]
            fig.add_scatter(
                x=[r["n"] for r in copy_rows],
                y=[r["copy_Bps"] / 1e9 for r in copy_rows],
                name="copy (same rounds)",
                legendgroup="copy",
                showlegend=j == 1,
                line={"dash": "dot", "color": "gray"},
                row=1,
                col=j,
            )
            fig.update_xaxes(type="log", title_text="elements per task (N)", row=1, col=j)
            fig.update_yaxes(title_text="GB/s of minimum traffic", row=1, col=j)
        fig.update_layout(
            title=f"Fused op on {op['config']['device']}: achieved bandwidth "
            "(dotted: copy of one gradient, same rounds)"
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
