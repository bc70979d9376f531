"""``python -m mbviz study imbalance|tuning|sparse|select``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .. import metrics as M
from ..experiments import _multibalance_kwargs
from ..problems.base import MultiTaskProblem
from .problems import DATASETS, study_config, study_problem
from .questions import (
    DEFAULT_BUDGET,
    SELECT_SEEDS,
    SPARSE_METHODS,
    TUNING_METHODS,
    imbalance,
    runs_to_match,
    search_curve,
    select_multibalance,
    sparse,
    tuning,
)
from .runs import DEFAULT_CONFIG, DEFAULT_EXPONENTS, DEFAULT_METHODS, DEFAULT_SEEDS
from .stats import Study, format_summary


# ---------------------------------------------------------------------- command line
def _common(q: Any) -> None:
    q.add_argument("--problem", choices=DATASETS, default="movielens")
    seeds = q.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", nargs="+", type=int, help="the paired seeds (default 0..9)")
    seeds.add_argument("--num-seeds", type=int, help="seeds 0..N-1")
    q.add_argument("--steps", type=int, default=DEFAULT_CONFIG.steps)
    q.add_argument("--batch-size", type=int, default=None, help="default 512 (Wage: 128)")
    q.add_argument("--lr", type=float, default=DEFAULT_CONFIG.lr)
    q.add_argument("--arch", default=None, help="default: the problem's first architecture")
    q.add_argument("--max-users", type=int, default=None, help="a MovieLens subset (quick runs)")
    q.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    q.add_argument(
        "--reference",
        default=None,
        metavar="TASK",
        help="MultiBalance's reference: a task name, 'mean' or 'max' (default: the first task)",
    )
    q.add_argument("--relax", type=float, default=None, help="MultiBalance's relax factor")
    q.add_argument("--beta", type=float, default=None, help="MultiBalance's EMA factor")
    q.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    q.add_argument("-o", "--output", default=None, help="write the run table as CSV")
    q.add_argument("--summary-output", default=None, help="write the full summary as CSV")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(sub: Any) -> None:
    """Register ``study`` (with one subcommand per question) on ``python -m mbviz``."""
    p = sub.add_parser("study", help="paired multi-seed studies: does a rule beat the plain sum?")
    questions = p.add_subparsers(dest="question", required=True)
    q = questions.add_parser(
        "imbalance",
        help="one task's loss times 10**k: which methods keep their test metrics?",
        description=(
            "Train every method at every seed on the problem with one task's training loss "
            "times 10**k, for every k; print paired differences against 'equal' (mean, "
            "bootstrap 95%% interval, sign-test p) for Δm%% and the primary metrics."
        ),
    )
    _common(q)
    q.add_argument("--task", default=None, help="the scaled task's name (default: the first)")
    q.add_argument(
        "--exponents", nargs="+", type=float, default=list(DEFAULT_EXPONENTS), metavar="K"
    )
    q.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    q.set_defaults(func=_question_cli)
    q = questions.add_parser(
        "tuning",
        help="static loss weights from a random search vs balancing rules at their defaults",
        description=(
            "Random search of static loss weights (BUDGET training runs per seed, the first "
            "the plain sum), chosen on validation Δm%%, reported on test, against the rules."
        ),
    )
    _common(q)
    q.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="search runs per seed")
    q.add_argument("--search-seed", type=int, default=0, help="RNG seed of the candidates")
    q.add_argument("--methods", nargs="+", default=list(TUNING_METHODS))
    q.add_argument("--curve-output", default=None, help="write the search curve as CSV")
    q.set_defaults(func=_question_cli)
    q = questions.add_parser(
        "sparse",
        help="a rare binary task next to dense ones: weights, gradient norms on Z, NE",
        description="The problem with a rare binary task (see mbviz.study.SPARSE_TASK).",
    )
    _common(q)
    q.add_argument("--methods", nargs="+", default=list(SPARSE_METHODS))
    q.set_defaults(func=_question_cli)
    q = questions.add_parser(
        "select",
        help="choose MultiBalance's relax, reference and beta on validation Δm%%",
        description="Sweep mbviz.study.SELECT_GRID at seeds 100..102; print the choice.",
    )
    _common(q)
    q.add_argument("--sparse", action="store_true", help="the problem with the rare task")
    q.set_defaults(func=_question_cli, seeds=list(SELECT_SEEDS))


def _problem(args: argparse.Namespace) -> MultiTaskProblem:
    sparse = args.question == "sparse" or getattr(args, "sparse", False)
    return study_problem(args.problem, sparse=sparse, max_users=args.max_users)


def _mb_kwargs(args: argparse.Namespace, problem: MultiTaskProblem) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.reference in ("mean", "max"):
        kw["reference"] = args.reference
    elif args.reference is not None:
        kw.update(
            _multibalance_kwargs(argparse.Namespace(reference=args.reference, relax=None), problem)
        )
    if args.relax is not None:
        kw["relax"] = args.relax
    if args.beta is not None:
        kw["beta"] = args.beta
    return kw


def _question_cli(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    problem = _problem(args)
    if args.num_seeds is not None:
        if args.num_seeds < 1:
            raise ValueError(f"--num-seeds must be >= 1, got {args.num_seeds}")
        seeds: Sequence[int] = range(args.num_seeds)
    else:
        seeds = args.seeds if args.seeds is not None else DEFAULT_SEEDS
    if args.arch is not None and args.arch not in problem.archs:
        raise ValueError(f"--arch must be one of {list(problem.archs)}, got {args.arch!r}")
    base = study_config(args.problem)
    config = replace(
        base,
        steps=args.steps,
        batch_size=args.batch_size or base.batch_size,
        lr=args.lr,
        arch=args.arch or problem.archs[0],
    )
    mb_kwargs = _mb_kwargs(args, problem)
    rule_kwargs = {"multibalance": mb_kwargs} if mb_kwargs else None
    common = dict(seeds=list(seeds), config=config, dataset=args.problem)
    progress = not args.no_progress
    curve = None
    if args.question == "select":
        choice, runs = select_multibalance(problem, progress=progress, **common)
        study = Study(runs)
        print("MultiBalance chosen on validation Δm%:", choice)
    elif args.question == "imbalance":
        study = imbalance(
            problem,
            task=args.task if args.task is not None else 0,
            exponents=args.exponents,
            methods=args.methods,
            rule_kwargs=rule_kwargs,
            progress=progress,
            **common,
        )
    elif args.question == "tuning":
        study = tuning(
            problem,
            budget=args.budget,
            search_seed=args.search_seed,
            methods=args.methods,
            rule_kwargs=rule_kwargs,
            progress=progress,
            **common,
        )
        curve = search_curve(study.runs, n_boot=args.bootstrap)
    else:
        study = sparse(
            problem,
            methods=args.methods,
            rule_kwargs=rule_kwargs,
            progress=progress,
            **common,
        )
    summary = study.summary(n_boot=args.bootstrap)
    if args.output:
        study.to_csv(args.output)
    if args.summary_output:
        summary.to_csv(args.summary_output, index=False)
    if curve is not None:
        if getattr(args, "curve_output", None):
            curve.to_csv(args.curve_output, index=False)
        print(curve.to_string(index=False))
        print("search runs to match multibalance:", runs_to_match(curve))
    if args.question == "select":
        g = study.runs[study.runs["method"] == "multibalance"].groupby("param", sort=False)
        print(g[["val_delta_m", "delta_m"]].mean().to_string())
    else:
        primary = {
            f"{t} {M.PRIMARY_METRIC[k]}" for t, k in zip(problem.task_names, problem.task_kinds)
        }
        if args.question == "sparse":
            primary |= {
                f"{t} ne" for t, k in zip(problem.task_names, problem.task_kinds) if k == "binary"
            }
        print(format_summary(summary[summary["metric"].isin({"delta_m", *primary})]))
    for path in (args.output, args.summary_output, getattr(args, "curve_output", None)):
        if path:
            print(f"wrote {path}")
    return 0
