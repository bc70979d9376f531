"""Why the moving average: weight noise from mini-batch gradient noise, vs beta and batch size.

:func:`weight_series` holds a model fixed (after an optional warm-up), draws
``steps`` mini-batches, and runs MultiBalance through the real fork on each: the
weights then vary only because the mini-batch gradient norms are noisy. ``beta``
smooths that noise; larger batches shrink it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mbkernels import MultiBalance
from mbkernels.validation import check_float, check_int

from ._deps import require
from .problems.base import MultiTaskProblem
from .problems.synthetic import SyntheticProblem
from .runner import train


def default_problem() -> SyntheticProblem:
    """Two noisy, unequal tasks: the setting where raw-norm weights jitter most."""
    return SyntheticProblem(
        num_tasks=2, angle=90.0, scale_ratio=10.0, noise=0.3, outliers=0.02, rep_dim=2
    )


def warmed_up_model(problem: MultiTaskProblem, *, steps: int = 300, seed: int = 0):
    """A model trained ``steps`` steps with equal weights (gradients near an optimum are
    mostly noise, which is where the EMA matters)."""
    if steps == 0:
        torch.manual_seed(seed)
        return problem.make_model(problem.archs[0])
    return train(problem, steps=steps, batch_size=128, lr=0.05, seed=seed, progress=False).model


def weight_series(
    problem: MultiTaskProblem,
    model,
    *,
    beta: float,
    batch_size: int,
    steps: int = 100,
    relax: float = 0.7,
    seed: int = 0,
):  # -> pandas.DataFrame
    """MultiBalance weights over ``steps`` fresh mini-batches at fixed model parameters.

    Columns: ``beta, batch_size, step, task, norm, ema, weight``. The same ``seed`` draws
    the same batches, so two betas are compared on identical gradients.
    """
    pd = require("pandas")
    check_float("beta", beta, low=0.0, high=1.0, high_open=True)
    check_int("batch_size", batch_size, low=1)
    check_int("steps", steps, low=1)
    bal = MultiBalance(problem.num_tasks, beta=beta, relax=relax, reference="target", target=0)
    previous = model.balancer
    model.balancer = bal
    gen = torch.Generator().manual_seed(seed)
    rows = []
    try:
        for step in range(1, steps + 1):
            batch = problem.sample_batch(batch_size, gen)
            losses = problem.task_losses(model(*batch.inputs), batch)
            model.zero_grad(set_to_none=True)
            sum(losses).backward()
            st = bal.stats
            for t, (n, e, w) in enumerate(
                zip(st.norms.tolist(), st.ema.tolist(), st.weights.tolist())
            ):
                rows.append((beta, batch_size, step, problem.task_names[t], n, e, w))
    finally:
        model.balancer = previous
        model.zero_grad(set_to_none=True)
    cols = ["beta", "batch_size", "step", "task", "norm", "ema", "weight"]
    return pd.DataFrame(rows, columns=cols)


def weight_variability(
    problem: MultiTaskProblem,
    model,
    *,
    betas: Sequence[float] = (0.0, 0.5, 0.9, 0.99),
    batch_sizes: Sequence[int] = (16, 64, 256),
    steps: int = 100,
    burn_in: int = 20,
    seed: int = 0,
):  # -> pandas.DataFrame
    """Standard deviation of each task's weight over steps (after ``burn_in``) for every
    (beta, batch size). Columns: ``beta, batch_size, task, weight_std, weight_mean``."""
    pd = require("pandas")
    parts = []
    for b in betas:
        for bs in batch_sizes:
            s = weight_series(problem, model, beta=b, batch_size=bs, steps=steps, seed=seed)
            s = s[s["step"] > burn_in]
            g = s.groupby("task", sort=False)["weight"].agg(["std", "mean"]).reset_index()
            g.insert(0, "batch_size", bs)
            g.insert(0, "beta", b)
            parts.append(g.rename(columns={"std": "weight_std", "mean": "weight_mean"}))
    return pd.concat(parts, ignore_index=True)
