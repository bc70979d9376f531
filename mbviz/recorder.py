"""From ``bal.stats`` in your own training loop to the tidy history the figures read.

::

    bal = mbk.MultiBalance(num_tasks=3)
    rec = StatsRecorder(["click", "like", "rating"], rule="multibalance")
    for step in range(1, steps + 1):
        ...
        sum(losses).backward()
        rec.record(bal.stats, losses)       # converts to Python at once
        opt.step()
    mbviz.figures.magnitudes_and_weights(rec.history())

The cosine columns need the off-diagonal Gram entries: build the balancer with
``full_gram=True`` (otherwise they are NaN, as in ``bal.stats.cosine``).

The history has the columns of :attr:`mbviz.runner.RunResult.history`: one row per
(step, task) with ``step, task, loss, norm, ema, weight, cos_<task>..., step_time, rule,
level, seed``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from mbkernels import cosine_from_gram

from ._deps import require


def stats_values(
    stats: Any, num_tasks: int
) -> tuple[list[float], list[float], list[float], list[list[float]]]:
    """``(norms, ema, weights, cosine)`` of one step's stats as Python lists.

    ``stats`` is a :class:`mbkernels.BalanceStats` or anything with ``gram``, ``norms``,
    ``weights`` and ``ema`` (``None``: no balancer — NaN norms and cosines, weights 1).
    """
    nan_t = [math.nan] * num_tasks
    if stats is None:
        return nan_t, nan_t, [1.0] * num_tasks, [list(nan_t) for _ in range(num_tasks)]
    norms = [float(v) for v in stats.norms.tolist()]
    if len(norms) != num_tasks:
        raise ValueError(f"stats have {len(norms)} tasks, expected num_tasks={num_tasks}")
    ema = [float(v) for v in stats.ema.tolist()] if stats.ema is not None else nan_t
    weights = [float(v) for v in stats.weights.tolist()]
    cos = cosine_from_gram(stats.gram).tolist()
    return norms, ema, weights, cos


def _to_float(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def history_columns(task_names: Sequence[str]) -> list[str]:
    """The history's columns before ``rule, level, seed``."""
    return (
        ["step", "task", "loss", "norm", "ema", "weight"]
        + [f"cos_{n}" for n in task_names]
        + ["step_time"]
    )


class StatsRecorder:
    """Collects one row per task per :meth:`record` call; :meth:`history` is the table.

    Args:
        task_names: the tasks in the balancer's order.
        rule, level, seed: written to the ``rule``, ``level`` and ``seed`` columns (the
            figures group and label runs by them).
    """

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        rule: str = "custom",
        level: str = "representation",
        seed: int = 0,
    ) -> None:
        self.task_names = tuple(str(t) for t in task_names)
        if not self.task_names:
            raise ValueError("task_names must name at least one task")
        if len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"task_names must be distinct, got {list(self.task_names)}")
        self.rule, self.level, self.seed = rule, level, seed
        self.rows: list[tuple[Any, ...]] = []
        self._step = 0

    def record(
        self,
        stats: Any,
        losses: Iterable[Any] | None = None,
        *,
        step: int | None = None,
        step_time: float = math.nan,
    ) -> None:
        """Add the step whose balancer stats are ``stats`` (``bal.stats`` right after the
        backward). ``losses``: the per-task losses (tensors or floats; NaN if omitted).
        ``step`` defaults to one more than the last recorded step."""
        T = len(self.task_names)
        loss_v = [math.nan] * T if losses is None else [_to_float(v) for v in losses]
        if len(loss_v) != T:
            raise ValueError(f"losses must have {T} entries (one per task), got {len(loss_v)}")
        step = self._step + 1 if step is None else int(step)
        norms, ema, weights, cos = stats_values(stats, T)
        for t, name in enumerate(self.task_names):
            self.rows.append(
                (step, name, loss_v[t], norms[t], ema[t], weights[t], *cos[t], step_time)
            )
        self._step = step

    def history(self):  # -> pandas.DataFrame
        """The tidy history (a new DataFrame each call)."""
        pd = require("pandas")
        h = pd.DataFrame(self.rows, columns=history_columns(self.task_names))
        h["rule"] = self.rule
        h["level"] = self.level
        h["seed"] = self.seed
        return h


def history_from_stats(
    stats: Sequence[Any],
    task_names: Sequence[str],
    *,
    losses: Sequence[Sequence[Any]] | None = None,
    steps: Sequence[int] | None = None,
    rule: str = "custom",
    level: str = "representation",
    seed: int = 0,
):  # -> pandas.DataFrame
    """The tidy history of a list of per-step stats (and optional per-step losses).

    Keep each step's stats with ``bal.stats`` (a fresh object per step) or, to convert as
    you go, use :class:`StatsRecorder`.
    """
    if losses is not None and len(losses) != len(stats):
        raise ValueError(f"losses must have one entry per step ({len(stats)}), got {len(losses)}")
    if steps is not None and len(steps) != len(stats):
        raise ValueError(f"steps must have one entry per step ({len(stats)}), got {len(steps)}")
    rec = StatsRecorder(task_names, rule=rule, level=level, seed=seed)
    for i, s in enumerate(stats):
        rec.record(
            s,
            None if losses is None else losses[i],
            step=None if steps is None else steps[i],
        )
    return rec.history()
