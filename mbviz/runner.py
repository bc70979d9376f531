"""The experiment runner: train a multi-task model with any rule and record everything.

:func:`train` runs one experiment and returns a :class:`RunResult` whose tables are
tidy pandas DataFrames:

``history`` — one row per (step, task): ``step, task, loss, norm, ema, weight,
cos_<task>... , step_time`` plus ``rule, level, seed``. ``loss`` is the task's training
loss (after the problem's loss scale, before any preference weight); ``norm`` the norm of
the task's gradient that the rule saw (on the representation, or on the shared parameters
at parameter level); ``ema`` the rule's moving average (NaN for rules without one);
``weight`` the weight the rule applied; ``cos_<u>`` the cosine between this task's
gradient and task ``u``'s; ``step_time`` seconds for forward + backward + optimiser step.

``evals`` — one row per (step, split, task, metric): ``value``.

Two levels:

- ``"representation"``: the rule runs inside the backward pass of ``sum(losses)`` through
  the model's balancer (:mod:`mbkernels` fork): one backward per step.
- ``"parameter"``: :class:`mbkernels.param_level.RuleParams`: one backward per task (T
  backward passes), the Gram matrix of the per-task gradients of the *shared parameters*,
  the same rule object (through :meth:`mbkernels.Balancer.step_weights`), and
  ``sum_t w_t grad_t`` written to the shared parameters; task-specific parameters get
  their ordinary gradients, as at representation level. The published parameter-level
  methods of :mod:`mbkernels.param_level` run by name: ``rule="metabalance_params"``
  (MetaBalance with a per-parameter EMA) and ``rule="mgda_params"``; their history
  ``weight`` and ``ema`` are averages over the shared parameter tensors.

Length: ``steps`` mini-batches drawn with replacement, or ``epochs`` passes over a
problem's fixed training set (each row once per epoch, in a fresh order; problems with a
:attr:`~mbviz.problems.MultiTaskProblem.train_size`). Early stopping: ``monitor`` names a
validation metric (``"<task>:<metric>"``, ``"<task>"`` for its primary metric, or
``"mean"`` for the Δm% of every task's primary metric against the first evaluation);
training stops after ``patience`` evaluations without improvement and, with
``restore_best``, the model gets back the weights of its best evaluation before the test
metrics are taken (:attr:`RunResult.best_step`).

Fixed preference weights (``preference=``) multiply the task losses before the rule:
with ``rule="equal"`` that is linear scalarisation, the sweep behind an empirical
Pareto front (:func:`sweep_preferences`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mbkernels import Balancer
from mbkernels.param_level import RuleParams
from mbkernels.validation import check_choice, check_float, check_int

from . import metrics as M
from ._deps import require
from .problems.base import Batch, MultiTaskProblem
from .recorder import history_columns, stats_values
from .rules import make_rule

LEVELS = ("representation", "parameter")

#: Published parameter-level methods (``level="parameter"`` only): rule name -> class name
#: in :mod:`mbkernels.param_level`. Every other rule name at parameter level runs the
#: Gram rule on the shared-parameter gradients (see the module docstring).
PARAM_METHODS = {"metabalance_params": "MetaBalanceParams", "mgda_params": "MGDAParams"}


@dataclass(frozen=True)
class _ParamStatsView:
    """A parameter-level balancer's stats as the runner records them: weights and EMA
    averaged over the shared parameter tensors."""

    gram: Tensor
    norms: Tensor
    weights: Tensor
    ema: Tensor | None


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (``seed`` makes it reproducible)."""

    rule: str = "equal"
    rule_kwargs: dict[str, Any] = field(default_factory=dict)
    level: str = "representation"
    arch: str | None = None
    steps: int = 300
    batch_size: int = 512
    lr: float = 1e-2
    weight_decay: float = 0.0
    optimizer: str = "adam"
    eval_every: int = 0
    eval_splits: tuple[str, ...] = ("val",)
    seed: int = 0
    preference: tuple[float, ...] | None = None
    progress: bool = True
    backend: str = "auto"
    epochs: int | None = None
    monitor: str | None = None
    patience: int = 0
    restore_best: bool = True

    def validate(self, problem: MultiTaskProblem) -> RunConfig:
        check_choice("level", self.level, LEVELS)
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_float("lr", self.lr, low=0.0, high=10.0, low_open=True)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_float("weight_decay", self.weight_decay, low=0.0, high=10.0)
        check_int("eval_every", self.eval_every, low=0)
        check_int("seed", self.seed, low=0)
        if self.arch is not None:
            check_choice("arch", self.arch, problem.archs)
        if self.preference is not None:
            if len(self.preference) != problem.num_tasks:
                raise ValueError(
                    f"preference must have num_tasks={problem.num_tasks} entries, "
                    f"got {len(self.preference)}"
                )
            for i, p in enumerate(self.preference):
                check_float(f"preference[{i}]", p, low=0.0, high=1e6)
        if self.rule == "none" and self.level == "parameter":
            raise ValueError("rule='none' (no balancer) needs level='representation'")
        if self.rule in PARAM_METHODS and self.level != "parameter":
            raise ValueError(
                f"rule={self.rule!r} is a parameter-level method: use level='parameter'"
            )
        if self.epochs is not None:
            if not (isinstance(self.epochs, int) and self.epochs >= 1):
                raise ValueError(f"epochs must be an integer >= 1 or None, got {self.epochs!r}")
            if problem.train_size is None:
                raise ValueError(
                    f"epochs needs a problem with a fixed training set; "
                    f"{type(problem).__name__} draws its batches: use steps="
                )
        if not (isinstance(self.patience, int) and self.patience >= 0):
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")
        if self.monitor is not None:
            parse_monitor(self.monitor, problem)
            if "val" not in self.eval_splits:
                raise ValueError(
                    f"monitor={self.monitor!r} reads the 'val' split: "
                    f"eval_splits must include 'val', got {self.eval_splits}"
                )
            if not self.eval_every and self.epochs is None:
                raise ValueError(
                    f"monitor={self.monitor!r} needs evaluations during training: "
                    "set eval_every > 0 or train by epochs"
                )
        return self

    def total_steps(self, problem: MultiTaskProblem) -> int:
        """Training steps this config runs (at most: early stopping may end it sooner)."""
        if self.epochs is None:
            return self.steps
        return self.epochs * self.steps_per_epoch(problem)

    def steps_per_epoch(self, problem: MultiTaskProblem) -> int:
        n = problem.train_size
        if n is None:
            raise ValueError(f"{type(problem).__name__} has no epochs (no fixed training set)")
        return math.ceil(n / self.batch_size)


def parse_monitor(monitor: str, problem: MultiTaskProblem) -> tuple[str | None, str | None]:
    """``(task, metric)`` of a ``monitor`` string; ``(None, None)`` for ``"mean"``."""
    if monitor == "mean":
        return None, None
    task, _, metric = monitor.partition(":")
    if task not in problem.task_names:
        allowed = ", ".join(repr(t) for t in ("mean", *problem.task_names))
        raise ValueError(
            f"monitor must be 'mean', '<task>' or '<task>:<metric>' with task one of "
            f"{allowed}, got {monitor!r}"
        )
    kind = problem.task_kinds[problem.task_names.index(task)]
    if not metric:
        return task, M.PRIMARY_METRIC[kind]
    allowed_metrics = M.METRICS[kind]
    if metric not in allowed_metrics:
        raise ValueError(
            f"monitor metric for {kind} task {task!r} must be one of {allowed_metrics}, "
            f"got {metric!r}"
        )
    return task, metric


def monitor_score(
    monitor: str,
    problem: MultiTaskProblem,
    metrics: dict[str, dict[str, float]],
    first: dict[str, dict[str, float]],
) -> float:
    """The monitored value of validation ``metrics``, signed so that higher is better.

    ``first`` is the first evaluation (the baseline of ``"mean"``; tasks whose first value
    is 0 or not finite, such as an AUC on a split with one class, are left out of it)."""
    task, metric = parse_monitor(monitor, problem)
    if task is None:
        kinds = dict(zip(problem.task_names, problem.task_kinds))
        prim = {t: M.PRIMARY_METRIC[k] for t, k in kinds.items()}
        prim = {t: m for t, m in prim.items() if math.isfinite(first[t][m]) and first[t][m] != 0}
        if not prim:
            return math.nan
        higher = {t: M.HIGHER_IS_BETTER[m] for t, m in prim.items()}
        cur = {t: metrics[t][m] for t, m in prim.items()}
        base = {t: first[t][m] for t, m in prim.items()}
        return M.delta_m(cur, base, higher)
    assert metric is not None
    value = metrics[task][metric]
    return value if M.HIGHER_IS_BETTER[metric] else -value


@dataclass(frozen=True)
class StepRecord:
    """What a callback sees after each training step (plain Python values)."""

    step: int
    steps: int
    task_names: tuple[str, ...]
    losses: list[float]
    norms: list[float]
    ema: list[float]
    weights: list[float]
    cosine: list[list[float]]
    step_time: float
    metrics: dict[str, dict[str, float]] | None = None  # task -> metric -> value, at evals
    epoch: int | None = None  # 1-based, when training by epochs


@dataclass
class RunResult:
    """A finished run: its config, tidy tables, final test metrics and the model."""

    config: RunConfig
    task_names: tuple[str, ...]
    task_kinds: tuple[str, ...]
    history: Any  # pandas.DataFrame
    evals: Any  # pandas.DataFrame
    test: dict[str, dict[str, float]]
    model: nn.Module
    #: The step whose weights the model holds after early stopping (``monitor`` with
    #: ``restore_best``); ``None`` without a monitor.
    best_step: int | None = None
    #: The last step trained (below the planned total when early stopping ended the run).
    last_step: int | None = None

    @property
    def label(self) -> str:
        from .rules import label

        name = label(self.config.rule)
        if self.config.preference is not None:
            name += " " + ",".join(f"{p:g}" for p in self.config.preference)
        if self.config.level == "parameter" and self.config.rule not in PARAM_METHODS:
            name += " (param)"
        return name

    def primary(self, split: str = "test") -> dict[str, float]:
        """Task -> its primary metric (AUC for binary, RMSE for regression)."""
        if split == "test":
            src = self.test
        else:
            last = self.evals[self.evals["split"] == split]
            last = last[last["step"] == last["step"].max()]
            src = {
                t: dict(zip(g["metric"], g["value"])) for t, g in last.groupby("task", sort=False)
            }
        return {t: src[t][M.PRIMARY_METRIC[k]] for t, k in zip(self.task_names, self.task_kinds)}

    def steps_per_second(self, skip: int = 5) -> float:
        """Training steps per second (median step time, the first ``skip`` steps ignored)."""
        h = self.history.drop_duplicates("step")
        times = h["step_time"].to_numpy()[skip:] if len(h) > skip else h["step_time"].to_numpy()
        return float(1.0 / np.median(times))


def evaluate(
    model: nn.Module, problem: MultiTaskProblem, split: str, *, chunk: int = 16384
) -> dict[str, dict[str, float]]:
    """Per-task metrics of ``model`` on ``problem.split(split)``: task -> metric -> value."""
    batch = problem.split(split)
    was_training = model.training
    model.eval()
    outs: list[list[Tensor]] = [[] for _ in range(problem.num_tasks)]
    with torch.no_grad():
        for start in range(0, len(batch), chunk):
            part = batch.take(torch.arange(start, min(start + chunk, len(batch))))
            for t, o in enumerate(model(*part.inputs)):
                outs[t].append(o.float())
    model.train(was_training)
    result = {}
    for t, (name, kind) in enumerate(zip(problem.task_names, problem.task_kinds)):
        m = batch.mask[:, t]
        o = torch.cat(outs[t])[m].numpy()
        y = batch.targets[m, t].numpy()
        result[name] = M.task_metrics(kind, y, o)
    return result


def _make_optimizer(config: RunConfig, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)


class Trainer:
    """One model, optimiser and rule, stepped one mini-batch at a time.

    :func:`train` drives it and records; :func:`mbviz.throughput.measure_throughput`
    interleaves several trainers to time them side by side.
    """

    def __init__(self, problem: MultiTaskProblem, config: RunConfig) -> None:
        self.problem = problem
        self.config = config.validate(problem)
        torch.manual_seed(config.seed)
        self.model = problem.make_model(config.arch or problem.archs[0])
        self.balancer: Balancer | None = None  # parameter level only
        self.param_balancer: Any = None  # mbkernels.param_level methods
        self.rule_params: RuleParams | None = None  # a rule at parameter level
        if config.rule == "none":
            self.model.attach(None)
        elif config.rule in PARAM_METHODS:
            import mbkernels.param_level as pl

            self.model.attach(None)
            cls = getattr(pl, PARAM_METHODS[config.rule])
            self.param_balancer = cls(
                self.model.shared_parameters(), problem.num_tasks, **config.rule_kwargs
            )
        else:
            rule = make_rule(config.rule, problem.num_tasks, **config.rule_kwargs)
            if config.level == "representation":
                self.model.attach(rule, backend=config.backend)
            else:
                self.model.attach(None)
                self.balancer = Balancer(rule, backend=config.backend, full_gram=True)
                self.rule_params = RuleParams(self.model.shared_parameters(), self.balancer)
        self.optimizer = _make_optimizer(config, list(self.model.parameters()))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.pref = None if config.preference is None else [float(p) for p in config.preference]
        self.model.train()

    def step(self, batch: Batch | None = None) -> tuple[list[Tensor], Any, float]:
        """One training step on ``batch`` (default: one drawn from the problem):
        (task losses, balance stats or None, seconds taken)."""
        if batch is None:
            batch = self.problem.sample_batch(self.config.batch_size, self.generator)
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        outs = self.model(*batch.inputs)
        losses = self.problem.task_losses(outs, batch)
        weighted = losses if self.pref is None else [p * l for p, l in zip(self.pref, losses)]
        if self.param_balancer is not None:
            self.param_balancer.backward(weighted)
            st = self.param_balancer.stats
            ema = st.state.get("ema")
            stats = _ParamStatsView(
                st.gram.float(),
                st.norms.float(),
                st.weights.float().mean(0),
                None if ema is None else ema.float().mean(0),
            )
        elif self.rule_params is not None:
            self.rule_params.backward(weighted)
            stats = self.rule_params.balancer.stats
        else:
            sum(weighted).backward()  # type: ignore[union-attr]
            stats = self.model.stats
        self.optimizer.step()
        return losses, stats, time.perf_counter() - t0


def train(
    problem: MultiTaskProblem,
    config: RunConfig | None = None,
    *,
    callback: Callable[[StepRecord], None] | None = None,
    **overrides: Any,
) -> RunResult:
    """Train one model on ``problem`` with ``config`` (fields may be overridden by keyword).

    ``callback(record)`` runs after every step (see :class:`StepRecord`); the live
    training monitor uses it. Returns a :class:`RunResult`. With ``epochs`` and
    ``eval_every=0`` the splits are evaluated at the end of every epoch.
    """
    pd = require("pandas")
    tqdm = require("tqdm.auto").tqdm
    config = replace(config or RunConfig(), **overrides).validate(problem)
    T = problem.num_tasks
    names = problem.task_names
    trainer = Trainer(problem, config)
    model = trainer.model

    rows: list[tuple[Any, ...]] = []
    eval_rows: list[tuple[Any, ...]] = []
    total = config.total_steps(problem)
    per_epoch = config.steps_per_epoch(problem) if config.epochs is not None else None

    def run_eval(step: int) -> dict[str, dict[str, dict[str, float]]]:
        out = {}
        for split in config.eval_splits:
            res = evaluate(model, problem, split)
            for task, ms in res.items():
                for metric, value in ms.items():
                    eval_rows.append((step, split, task, metric, value))
            out[split] = res
        return out

    def batches() -> Any:
        if per_epoch is None:
            for _ in range(total):
                yield None, None
            return
        n = problem.train_size
        assert n is not None
        for epoch in range(1, (config.epochs or 0) + 1):
            perm = torch.randperm(n, generator=trainer.generator)
            for start in range(0, n, config.batch_size):
                yield epoch, problem.train_batch(perm[start : start + config.batch_size])

    def eval_due(step: int) -> bool:
        if config.eval_every:
            return step % config.eval_every == 0 or step == total
        return per_epoch is not None and (step % per_epoch == 0 or step == total)

    best: tuple[float, int, dict[str, Any]] | None = None
    first_val: dict[str, dict[str, float]] | None = None
    since_best = 0
    bar = tqdm(
        total=total,
        desc=f"{config.rule} s{config.seed}",
        disable=not config.progress,
        leave=False,
    )
    model.train()
    step = 0
    for step, (epoch, batch) in enumerate(batches(), start=1):
        losses, stats, step_time = trainer.step(batch)
        loss_v = [float(l.detach()) for l in losses]
        norms, ema, weights, cos = stats_values(stats, T)
        for t in range(T):
            rows.append(
                (step, names[t], loss_v[t], norms[t], ema[t], weights[t], *cos[t], step_time)
            )
        evaluated = None
        stop = False
        if eval_due(step):
            by_split = run_eval(step)
            evaluated = by_split[config.eval_splits[-1]]
            if config.monitor is not None:
                val = by_split["val"]
                first_val = first_val or val
                score = monitor_score(config.monitor, problem, val, first_val)
                if best is None or score > best[0]:
                    snapshot = copy.deepcopy(model.state_dict())
                    best, since_best = (score, step, snapshot), 0
                else:  # NaN scores never improve
                    since_best += 1
                    stop = config.patience > 0 and since_best >= config.patience
        if callback is not None:
            callback(
                StepRecord(
                    step,
                    total,
                    names,
                    loss_v,
                    norms,
                    ema,
                    weights,
                    cos,
                    step_time,
                    evaluated,
                    epoch,
                )
            )
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(loss_v):.3g}")
        if stop:
            break
    bar.close()
    if not eval_rows:
        run_eval(step)
    best_step = None
    if best is not None:
        best_step = best[1]
        if config.restore_best:
            model.load_state_dict(best[2])
    test = evaluate(model, problem, "test")

    history = pd.DataFrame(rows, columns=history_columns(names))
    history["rule"] = config.rule
    history["level"] = config.level
    history["seed"] = config.seed
    evals = pd.DataFrame(eval_rows, columns=["step", "split", "task", "metric", "value"])
    return RunResult(
        config, names, tuple(problem.task_kinds), history, evals, test, model, best_step, step
    )


# ------------------------------------------------------------------- many runs
def results_table(results: Sequence[RunResult]):  # -> pandas.DataFrame
    """Long table of final test metrics: ``label, rule, level, seed, task, metric, value``."""
    pd = require("pandas")
    rows = []
    for r in results:
        for task, ms in r.test.items():
            for metric, value in ms.items():
                rows.append(
                    (r.label, r.config.rule, r.config.level, r.config.seed, task, metric, value)
                )
    return pd.DataFrame(rows, columns=["label", "rule", "level", "seed", "task", "metric", "value"])


def single_task_baselines(
    problem: MultiTaskProblem, config: RunConfig | None = None, **overrides: Any
) -> list[RunResult]:
    """One run per task, trained on that task alone (preference one-hot, equal rule).

    With a ``monitor``, each run stops early on its own task's primary validation metric
    (the other tasks are untrained there)."""
    config = replace(config or RunConfig(), **overrides)
    out = []
    for t in range(problem.num_tasks):
        pref = tuple(1.0 if u == t else 0.0 for u in range(problem.num_tasks))
        monitor = None if config.monitor is None else problem.task_names[t]
        out.append(
            train(
                problem,
                replace(
                    config,
                    rule="equal",
                    level="representation",
                    preference=pref,
                    rule_kwargs={},
                    monitor=monitor,
                ),
            )
        )
    return out


def baseline_metrics(baselines: Sequence[RunResult]) -> dict[str, float]:
    """Task -> primary test metric of the single-task run trained for that task."""
    out = {}
    for r in baselines:
        assert r.config.preference is not None
        t = int(np.argmax(r.config.preference))
        task = r.task_names[t]
        out[task] = r.primary("test")[task]
    return out


def delta_m(result: RunResult, baselines: dict[str, float]) -> float:
    """Δm% of ``result`` against single-task primary metrics (positive = better)."""
    higher = {
        t: M.HIGHER_IS_BETTER[M.PRIMARY_METRIC[k]]
        for t, k in zip(result.task_names, result.task_kinds)
    }
    return M.delta_m(result.primary("test"), baselines, higher)


def preference_grid(num_tasks: int, pair: tuple[int, int] = (0, 1), n: int = 7) -> list[tuple]:
    """Preference vectors sweeping tasks ``pair``: ``w_i = 2 lam, w_j = 2 (1 - lam)``,
    every other task 1, for ``n`` values of ``lam`` in [0.05, 0.95]."""
    check_int("n", n, low=2)
    i, j = pair
    if not (0 <= i < num_tasks and 0 <= j < num_tasks and i != j):
        raise ValueError(
            f"pair must be two different task indices in [0, {num_tasks - 1}], got {pair}"
        )
    grid = []
    for lam in np.linspace(0.05, 0.95, n):
        w = [1.0] * num_tasks
        w[i], w[j] = 2 * float(lam), 2 * float(1 - lam)
        grid.append(tuple(w))
    return grid


def sweep_preferences(
    problem: MultiTaskProblem,
    config: RunConfig | None = None,
    *,
    preferences: Sequence[Sequence[float]] | None = None,
    pair: tuple[int, int] = (0, 1),
    n: int = 7,
    **overrides: Any,
) -> list[RunResult]:
    """Linear scalarisation runs (equal rule, fixed preference weights): the points of an
    empirical Pareto front. ``preferences`` defaults to :func:`preference_grid`."""
    config = replace(config or RunConfig(), **overrides)
    prefs = preferences if preferences is not None else preference_grid(problem.num_tasks, pair, n)
    return [
        train(problem, replace(config, rule="equal", rule_kwargs={}, preference=tuple(p)))
        for p in prefs
    ]


def config_dict(config: RunConfig) -> dict[str, Any]:
    """The config as a plain dict (for reports)."""
    return asdict(config)
