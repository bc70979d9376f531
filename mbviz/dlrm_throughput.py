"""Training throughput: steps/s of one DLRM-style model under each method.

The harness of the throughput benchmark (``python -m benchmarks throughput``), of the
course's notebook 07 and of its report.

Methods (each on its own copy of the same initial model, same batch, SGD):

* ``sum``: plain sum of the task losses, one backward (the baseline);
* ``multibalance``: :class:`mbkernels.MultiBalance` through the fork, one backward;
* ``multibalance_tensor``: the same with the CPU host path and the GPU device path off
  (the general tensor path; only when named in ``--methods``);
* ``fork_only``: the fork with every weight 1 and no statistics (pass 2 only): the
  plain sum's gradient, but with all T task gradients of Z held until the last one
  arrives, as autograd must for any exact rebalancing. Not a method anyone would
  train with: it splits MultiBalance's cost into "holding T gradients" and "balancing";
* ``fork_hold``: the fork passing on task 0's gradient alone (no pass at all): what
  merely holding the T task gradients costs. Its gradient is not the sum's; it exists
  to split ``fork_only``'s cost into "holding" and "pass 2";
* ``detach``: representation-level balancing as some libraries do it: detach Z,
  backward each task's loss separately through its tower to collect ``dL_t/dZ``,
  combine them with the same fused op and rule, then backward the bottom once;
* parameter-level baselines (one backward per task through the shared
  parameters), from :mod:`mbkernels.param_level` when it is installed.

All methods of one T are timed in interleaved rounds (:mod:`mbviz.timing`), so the
ratios against ``sum`` are measured side by side. The peak memory of one step
(:mod:`mbviz.memory`) is reported next to it, in bytes and in units of ``|Z|``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from mbkernels import ops
from mbkernels.fork import Combine, fork
from mbkernels.multibalance import MultiBalance

from .dlrm import DLRM, Batch, DLRMConfig, make_batch
from .memory import peak_step_bytes
from .timing import (
    format_interval,
    interleaved,
    paired_difference,
    paired_difference_interval,
    paired_ratio,
    paired_ratio_interval,
)

LR = 0.01


@dataclass
class Method:
    """A training method bound to its own model copy.

    ``head(z)`` runs the towers on the shared representation ``z`` and backpropagates
    the method's combined gradient into ``z`` (and, if ``z`` is not a leaf, on into the
    bottom); ``backward()`` is a whole forward + backward; ``step()`` adds the optimizer.
    ``head`` is ``None`` for methods that need the bottom's parameters themselves.
    """

    name: str
    model: DLRM
    batch: Batch
    head: Callable[[Tensor], list[Tensor]] | None
    optimizer: torch.optim.Optimizer
    extra: dict[str, Any] = field(default_factory=dict)
    full_backward: Callable[[], list[Tensor]] | None = None

    def backward(self) -> list[Tensor]:
        self.model.zero_grad(set_to_none=True)
        if self.full_backward is not None:
            return self.full_backward()
        assert self.head is not None
        return self.head(self.model.representation(self.batch))

    def step(self) -> None:
        self.backward()
        self.optimizer.step()


MethodFactory = Callable[[DLRM, Batch], Method]

#: Methods run only when named (``--methods``): comparisons of implementations.
OPT_IN = ("multibalance_tensor",)


def _sgd(model: DLRM) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR)


def plain_sum(model: DLRM, batch: Batch) -> Method:
    t = model.cfg.num_tasks

    def head(z: Tensor) -> list[Tensor]:
        losses = model.task_losses([z] * t, batch)
        sum(losses).backward()  # type: ignore[union-attr]
        return losses

    return Method("sum", model, batch, head, _sgd(model))


def multibalance(model: DLRM, batch: Batch) -> Method:
    bal = MultiBalance(model.cfg.num_tasks).to(batch.dense.device)

    def head(z: Tensor) -> list[Tensor]:
        losses = model.task_losses(bal(z), batch)
        sum(losses).backward()  # type: ignore[union-attr]
        return losses

    return Method("multibalance", model, batch, head, _sgd(model), {"balancer": bal})


def multibalance_tensor(model: DLRM, batch: Batch) -> Method:
    """``multibalance`` with ``Balancer.fast_paths`` off (no CPU host path, no GPU device
    path): every step through the general tensor path."""
    method = multibalance(model, batch)
    method.extra["balancer"].fast_paths = False
    method.name = "multibalance_tensor"
    return method


def _fork_method(name: str, model: DLRM, batch: Batch, combine: Combine) -> Method:
    """The towers on the fork's T outputs, one backward; ``combine`` gets their gradients."""
    t = model.cfg.num_tasks

    def head(z: Tensor) -> list[Tensor]:
        losses = model.task_losses(fork(z, t, combine), batch)
        sum(losses).backward()  # type: ignore[union-attr]
        return losses

    return Method(name, model, batch, head, _sgd(model))


def fork_only(model: DLRM, batch: Batch) -> Method:
    ones = torch.ones(model.cfg.num_tasks, device=batch.dense.device)

    def combine(grads: Sequence[Tensor | None]) -> Tensor:
        present = [g for g in grads if g is not None]
        return ops.weighted_sum(present, ones[: len(present)], "torch")

    return _fork_method("fork_only", model, batch, combine)


def fork_hold(model: DLRM, batch: Batch) -> Method:
    def combine(grads: Sequence[Tensor | None]) -> Tensor | None:
        return grads[0]  # no pass over the gradients: holding them is all that is timed

    return _fork_method("fork_hold", model, batch, combine)


def detach_per_task(model: DLRM, batch: Batch) -> Method:
    """Same rule and op as ``multibalance``, but the task gradients of Z come from one
    backward per task through a detached copy of Z (the towers' graphs run T times)."""
    t = model.cfg.num_tasks
    bal = MultiBalance(t).to(batch.dense.device)

    def head(z: Tensor) -> list[Tensor]:
        zd = z.detach().requires_grad_(True)
        losses = model.task_losses([zd] * t, batch)
        grads = []
        for loss in losses:
            loss.backward()  # tower t's parameters and zd.grad
            assert zd.grad is not None
            grads.append(zd.grad)
            zd.grad = None
        weights = bal.step_weights(ops.gram(grads, bal.backend))
        z.backward(ops.weighted_sum(grads, weights, bal.backend))
        return losses

    return Method("detach", model, batch, head, _sgd(model), {"balancer": bal})


def _param_level_methods() -> dict[str, MethodFactory]:
    """Parameter-level baselines, where :mod:`mbkernels.param_level` provides them."""
    try:
        from mbkernels import param_level
    except ImportError:
        return {}
    found: dict[str, MethodFactory] = {}
    for name, cls_name in (
        ("param_metabalance", "MetaBalanceParams"),
        ("param_mgda", "MGDAParams"),
    ):
        cls = getattr(param_level, cls_name, None)
        if cls is None:
            continue

        def factory(model: DLRM, batch: Batch, cls: Any = cls, name: str = name) -> Method:
            balancer = cls(model.shared_parameters(), num_tasks=model.cfg.num_tasks)
            t = model.cfg.num_tasks

            def full_backward() -> list[Tensor]:
                z = model.representation(batch)
                losses = model.task_losses([z] * t, batch)
                balancer.backward(losses)
                return losses

            return Method(
                name, model, batch, None, _sgd(model), {"balancer": balancer}, full_backward
            )

        found[name] = factory
    return found


def available_methods() -> dict[str, MethodFactory]:
    """Every method this installation can run, baseline first."""
    return {
        "sum": plain_sum,
        "multibalance": multibalance,
        "multibalance_tensor": multibalance_tensor,
        "fork_only": fork_only,
        "fork_hold": fork_hold,
        "detach": detach_per_task,
        **_param_level_methods(),
    }


@dataclass
class ThroughputConfig:
    device: str = "cpu"
    tasks: Sequence[int] = (2, 4, 8)
    batch: int = 2048
    model: DLRMConfig = field(default_factory=DLRMConfig)
    rounds: int = 9
    min_sample_s: float = 0.5
    methods: Sequence[str] | None = None  # None: all available
    memory: bool = True


def check_methods(names: Sequence[str], known: Mapping[str, object], what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if a name is not among ``known``."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{what} must be among {sorted(known)}, got {unknown}")


def build_methods(
    cfg: ThroughputConfig, num_tasks: int, names: Sequence[str] | None = None
) -> tuple[dict[str, Method], Batch]:
    """One :class:`Method` per name, each on its own copy of one initial model."""
    factories = available_methods()
    names = list(names or cfg.methods or [n for n in factories if n not in OPT_IN])
    check_methods(names, factories, "methods")
    device = torch.device(cfg.device)
    mcfg = replace(cfg.model, num_tasks=num_tasks)
    torch.manual_seed(0)
    base = DLRM(mcfg).to(device)
    batch = make_batch(mcfg, cfg.batch).to(device)
    return {n: factories[n](copy.deepcopy(base), batch) for n in names}, batch


def _head_peak(m: Method, device: torch.device) -> int | None:
    """Peak bytes of the towers + balancing alone, on a leaf copy of Z: isolates what
    the method itself holds at once (the fork holds all T task gradients of Z)."""
    if m.head is None:
        return None
    head = m.head
    z = m.model.representation(m.batch).detach().requires_grad_(True)
    m.model.zero_grad(set_to_none=True)
    return peak_step_bytes(lambda: head(z), device)


def run_throughput(
    cfg: ThroughputConfig, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Time every method for every T; return a JSON-ready dict."""
    device = torch.device(cfg.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows: list[dict[str, Any]] = []
    names: list[str] = []
    for t in cfg.tasks:
        methods, _ = build_methods(cfg, t)
        names = list(methods)
        z_bytes = cfg.batch * cfg.model.rep_dim * 4
        peaks: dict[str, int] = {}
        head_peaks: dict[str, int | None] = {}
        if cfg.memory:
            for m in methods.values():
                m.step()  # first step allocates the optimizer's and autograd's lasting state
                peaks[m.name] = peak_step_bytes(m.step, device)
                head_peaks[m.name] = _head_peak(m, device)
        timings = interleaved(
            {m.name: m.step for m in methods.values()},
            rounds=cfg.rounds,
            warmup=1,
            min_sample_s=cfg.min_sample_s,
            sync=sync,
        )
        base = timings["sum"]
        for name, tm in timings.items():
            row: dict[str, Any] = {
                "num_tasks": t,
                "method": name,
                **tm.as_dict(),
                "steps_per_s": 1.0 / tm.median,
                "ratio_vs_sum": base.median / tm.median,
                "ratio_vs_sum_best": base.best / tm.best,
                "ratio_vs_sum_paired": paired_ratio(base, tm),
                "ratio_vs_sum_paired_90": list(paired_ratio_interval(base, tm)),
                # the paired time per step beyond the plain sum's: the method's own cost
                "overhead_us": 1e6 * paired_difference(base, tm),
                "overhead_us_90": [1e6 * v for v in paired_difference_interval(base, tm)],
                "step_us": 1e6 * tm.median,
                "z_bytes": z_bytes,
            }
            if cfg.memory:
                row["peak_step_bytes"] = peaks[name]
                row["extra_bytes_vs_sum"] = peaks[name] - peaks["sum"]
                row["extra_vs_sum_in_z"] = (peaks[name] - peaks["sum"]) / z_bytes
                hp, hs = head_peaks[name], head_peaks["sum"]
                row["head_peak_bytes"] = hp
                row["head_extra_vs_sum_in_z"] = (
                    (hp - hs) / z_bytes if hp is not None and hs is not None else None
                )
            rows.append(row)
        if progress is not None:
            progress(
                f"T={t}: "
                + ", ".join(f"{n} {paired_ratio(base, tm):.3f}x" for n, tm in timings.items())
            )
    return {
        "benchmark": "throughput",
        "config": {
            "device": cfg.device,
            "tasks": list(cfg.tasks),
            "batch": cfg.batch,
            "model": {k: v for k, v in cfg.model.__dict__.items() if k != "num_tasks"},
            "rounds": cfg.rounds,
            "min_sample_s": cfg.min_sample_s,
            "z_shape": [cfg.batch, cfg.model.rep_dim],
        },
        "methods": names,
        "rows": rows,
    }


def format_throughput(result: dict[str, Any]) -> str:
    """A plain-text table: steps/s, ratios to the plain sum (median and fastest round),
    peak memory of a step, and extra memory against the plain sum in units of |Z|
    (whole step, and towers + balancing alone)."""
    cfg = result["config"]
    lines = [
        f"throughput on {cfg['device']}, batch {cfg['batch']}, |Z| = "
        f"{cfg['z_shape'][0]}x{cfg['z_shape'][1]}; ratio = steps/s relative to the plain sum "
        "(same run, interleaved rounds)",
        f"{'T':>2} {'method':>18} {'steps/s':>8} {'ratio':>7} {'paired':>7} {'90% interval':>13} "
        f"{'(best)':>7} {'peak MiB':>9} {'step +|Z|':>9} {'head +|Z|':>9}",
    ]

    def num(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else format("-", ">" + fmt.split(".")[0])

    for r in result["rows"]:
        peak = r.get("peak_step_bytes")
        lines.append(
            f"{r['num_tasks']:>2} {r['method']:>18} {r['steps_per_s']:>8.2f} "
            f"{r['ratio_vs_sum']:>6.3f}x {r['ratio_vs_sum_paired']:>6.3f}x "
            f"{format_interval(r.get('ratio_vs_sum_paired_90')):>13} "
            f"{r['ratio_vs_sum_best']:>6.3f}x "
            f"{num(peak / 2**20 if peak is not None else None, '9.1f')} "
            f"{num(r.get('extra_vs_sum_in_z'), '9.2f')} "
            f"{num(r.get('head_extra_vs_sum_in_z'), '9.2f')}"
        )
    return "\n".join(lines)
