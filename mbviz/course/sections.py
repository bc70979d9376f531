"""The headless report's sections: each reruns one notebook's experiment at small size.

Every function takes ``size`` (the notebooks' ``SIZE``: 1 = classroom size) and
returns a :class:`mbviz.report.Section` with a short text, figures and tables.
Only library code runs here, the same calls the notebooks make.
"""

from __future__ import annotations

import torch

import mbkernels as mbk

from ..report import Section, SectionFn
from .traffic import bytes_moved
from .warmup import train_warmup, warmup_figure


def start_here(size: int) -> Section:
    _, history = train_warmup(steps=30 * size)
    last = history[history.step == history.step.max()].set_index("task")[["norm", "ema", "weight"]]
    return Section(
        key="00",
        title="One MultiBalance loop",
        notebook="00_start_here.ipynb",
        text=(
            "Three tasks whose losses differ in scale by 1, 10 and 100 share one representation "
            "Z. MultiBalance (relax 0.7, beta 0.9, target task 0) keeps the target's weight at 1 "
            "and scales the tasks with larger gradients on Z down, after one ordinary backward "
            "per step. The table is the last step's statistics."
        ),
        figures=[warmup_figure(history)],
        tables=[last],
    )


def inside_the_kernel(size: int) -> Section:
    import pandas as pd
    import plotly.graph_objects as go

    from mbkernels.bench.op import naive_step
    from mbkernels.bench.timing import interleaved

    task_counts = list(range(1, 9))
    n = 2**20
    traffic = go.Figure(
        [
            go.Bar(
                x=task_counts,
                y=[bytes_moved(t, n, "float32", m) / 1e6 for t in task_counts],
                name=m,
            )
            for m in ("fused", "naive")
        ],
        layout=go.Layout(
            title="Memory traffic of one balancing step, N = 2^20 float32",
            xaxis_title="number of tasks T",
            yaxis_title="bytes moved (MB)",
            barmode="group",
        ),
    )
    t_time, n_time = 4, 2**18 * size
    grads = [torch.randn(n_time) for _ in range(t_time)]
    bal = mbk.MultiBalance(num_tasks=t_time, bias_correction=False)
    ema = torch.zeros(t_time)

    def fused() -> torch.Tensor:
        return mbk.ops.weighted_sum(grads, bal.step_weights(mbk.ops.gram(grads)))

    times = interleaved({"fused": fused, "naive": lambda: naive_step(grads, ema)}, rounds=7)
    table = pd.DataFrame(
        {
            name: {
                "median ms": 1e3 * t.median,
                "bytes (MB)": bytes_moved(t_time, n_time, "float32", name) / 1e6,
            }
            for name, t in times.items()
        }
    ).T
    table["speed-up vs naive"] = table.loc["naive", "median ms"] / table["median ms"]
    return Section(
        key="06",
        title="Inside the Triton kernel: bytes moved",
        notebook="06_inside_the_triton_kernel.ipynb",
        text=(
            "The fused step reads the T gradients twice (pass 1: Gram matrix, pass 2: weighted "
            "sum) and writes one output: (2T + 1)·N elements, against (6T + 1)·N for a naive "
            "stack-based composition. The table times both on this machine's CPU (PyTorch path), "
            f"T = {t_time}, N = {n_time:,} float32, interleaved rounds."
        ),
        figures=[traffic],
        tables=[table],
    )


#: (key, function) in course order.
SECTIONS: list[tuple[str, SectionFn]] = [
    ("00", start_here),
    ("06", inside_the_kernel),
]
