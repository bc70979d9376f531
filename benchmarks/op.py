"""Op benchmark: the fused balancing step against a naive composition and torch.compile.

One balancing step on T gradients of N elements each (what the fork's backward
does, without the model around it):

* ``fused``: exactly what the fork's backward runs for a default
  :class:`mbkernels.MultiBalance`: pass 1, the rule with its state handling and
  range check, pass 2. Triton on CUDA (the whole Gram matrix, free there); the
  PyTorch path on CPU, where pass 1 computes only the norms the rule reads.
* ``fused_full`` (CPU only): the same with ``full_gram=True`` (the inner
  products between tasks too, as rules like MGDA need): the price of the
  cosines on a CPU.
* ``fused_general`` (CUDA only): ``fused`` with the device path off
  (``fast_paths=False``): the Triton passes with the rule and its state handling as
  PyTorch ops (the general tensor path), for a before/after in one run.
* ``fused_torch`` (CUDA only): the PyTorch path on the GPU, for comparison.
* ``naive``: ``torch.stack`` of the gradients, per-task norms, EMA, weights,
  broadcast weighted sum — what one writes without thinking about memory.
* ``compiled``: ``torch.compile`` of ``naive`` (the compiler may fuse what it can).

* ``fused_nocheck``: ``fused`` with ``range_check=False``: no float64 range
  check, so no host synchronisation between the passes.

The minimum traffic of any two-pass step is ``(2T + 1) * N`` elements (read the T
gradients twice, write one output); achieved bandwidth is that divided by the
time. The ceiling is one large copy (read + write; 1 GiB per side on CUDA, far
beyond any L2 cache) measured once: ``fraction_of_copy`` is the achieved
bandwidth over it. All candidates of one (T, N) are timed in interleaved rounds
with a copy of one N-element gradient (``copy_Bps``, for reference only: at small
N it runs from cache).

Every method's output is compared with the same step computed in float64
(``max_rel_diff_vs_float64``, the largest difference over the largest value);
beyond :data:`TOLERANCE` for the dtype the run records a failure
(``result["failures"]``, and the command line exits 1 after writing its files).

Kernel rows (``result["kernel_rows"]``, CUDA, or CPU through the Triton
interpreter): pass 1 (``gram``), pass 2 (``weighted_sum``) and both with fixed
weights (``both``), no rule and no host synchronisation, timed by
``triton.testing.do_bench`` (median; it clears the L2 cache with a 256 MB write
before every call, which also gives the host time to queue the launches, so the
time is the GPU's). They show what the kernels reach apart from the per-step host
work that the ``fused`` rows include (launches, pointer tables, the range check).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mbkernels.balancer import Balancer
from mbkernels.rules import MultiBalanceRule
from mbviz.naive import BETA, EPS, RELAX, naive_step
from mbviz.timing import interleaved

COPY = "_copy"  # the same-round copy of one gradient (for reference), not a method
#: Largest accepted ``max |out - ref| / max |ref|`` against the float64 step, per dtype:
#: float32 accumulation with one rounding to the dtype at the end (bfloat16 has 8
#: significant bits; the naive step also rounds every product to the dtype).
TOLERANCE = {"float32": 1e-4, "float16": 4e-3, "bfloat16": 3e-2, "float64": 1e-10}


def float64_step(grads: list[Tensor]) -> Tensor:
    """The combined gradient of :func:`naive_step` from a zero EMA, computed in float64."""
    ema = torch.zeros(len(grads), dtype=torch.float64, device=grads[0].device)
    return naive_step([g.double() for g in grads], ema)[0]


def min_bytes(num_tasks: int, n: int, itemsize: int) -> int:
    """Bytes the step must move at least: read T gradients twice, write one output."""
    return (2 * num_tasks + 1) * n * itemsize


def copy_bandwidth(
    device: torch.device, numel: int, *, rounds: int = 5, sync: Callable[[], None] | None = None
) -> dict[str, float]:
    """Measured copy bandwidth (bytes/s, read + write) of one large float32 tensor."""
    src = torch.ones(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = interleaved({"copy": lambda: dst.copy_(src)}, rounds=rounds, sync=sync)["copy"]
    moved = 2 * src.numel() * src.element_size()
    return {"bytes": moved, "median_Bps": moved / t.median, "best_Bps": moved / t.best}


@dataclass
class OpConfig:
    """What the op benchmark sweeps."""

    device: str = "cpu"
    dtype: str = "float32"
    tasks: Sequence[int] = (2, 4, 8)
    log2_sizes: Sequence[int] = (16, 18, 20, 22, 24, 26)
    rounds: int = 5
    min_sample_s: float = 0.05
    compile: bool = True
    copy_log2: int = 26
    kernels: bool = True
    kernels_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _sync_for(device: torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


def _candidates(
    grads: list[Tensor], device: torch.device, compiled_step: Callable[..., Any] | None
) -> dict[str, Callable[[], Tensor]]:
    t = len(grads)
    cands: dict[str, Callable[[], Tensor]] = {}
    variants = (  # name: (backend, full_gram, range_check, fast paths on)
        {"fused": ("auto", False, True, True), "fused_nocheck": ("auto", False, False, True),
         "fused_general": ("auto", False, True, False), "fused_torch": ("torch", False, True, True)}
        if device.type == "cuda"
        else {"fused": ("auto", False, True, True), "fused_nocheck": ("auto", False, False, True),
              "fused_full": ("auto", True, True, True)}
    )  # fmt: skip
    for name, (backend, full_gram, check, fast) in variants.items():
        rule = MultiBalanceRule(t, beta=BETA, relax=RELAX, eps=EPS, bias_correction=False)
        bal = Balancer(rule, backend=backend, full_gram=full_gram, range_check=check).to(device)
        bal.fast_paths = fast

        def fused(bal: Balancer = bal) -> Tensor:
            out = bal.combine(grads)  # the fork's backward, without the model around it
            assert out is not None
            return out

        cands[name] = fused
    ema = torch.zeros(t, dtype=torch.float32, device=device)

    def naive() -> Tensor:
        return naive_step(grads, ema)[0]

    cands["naive"] = naive
    if compiled_step is not None:

        def compiled() -> Tensor:
            return compiled_step(grads, ema)[0]

        cands["compiled"] = compiled
    return cands


def _rel_diff(out: Tensor, ref: Tensor) -> float:
    """``max |out - ref| / max |ref|`` (ref in float64); inf if ``out`` is not finite."""
    scale = ref.abs().max().clamp_min(1e-300)
    return float((out.double() - ref).abs().max() / scale)


def _kernel_candidates(grads: list[Tensor]) -> dict[str, tuple[Callable[[], Tensor], int]]:
    """The Triton passes alone: ``{name: (call, minimum bytes moved)}``."""
    from mbkernels import ops

    t, n, size = len(grads), grads[0].numel(), grads[0].element_size()
    w = torch.linspace(0.5, 2.0, t, device=grads[0].device)

    def both() -> Tensor:
        ops.gram(grads, "triton")
        return ops.weighted_sum(grads, w, "triton")

    return {
        "gram": (lambda: ops.gram(grads, "triton"), t * n * size),
        "weighted_sum": (lambda: ops.weighted_sum(grads, w, "triton"), (t + 1) * n * size),
        "both": (both, (2 * t + 1) * n * size),
    }


def _kernel_reference(name: str, grads: list[Tensor]) -> Tensor:
    g64 = torch.stack([g.double() for g in grads])
    w = torch.linspace(0.5, 2.0, len(grads), device=g64.device, dtype=torch.float64)
    return g64 @ g64.T if name == "gram" else w @ g64


def _time_kernel(
    fn: Callable[[], object], device: torch.device, rounds: int
) -> tuple[float, float]:
    """(median, fastest) seconds per call: do_bench on CUDA (L2 cleared before each call),
    interleaved perf_counter samples elsewhere (the interpreter: the code path, not a
    measurement)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        med, low = do_bench(fn, quantiles=[0.5, 0.0], return_mode="median")
        return med / 1e3, low / 1e3
    tm = interleaved({"k": fn}, rounds=rounds, warmup=1)["k"]
    return tm.median, tm.best


def kernels_runnable(device: torch.device) -> bool:
    """Whether the Triton kernels run on ``device`` (CUDA, or CPU through the interpreter)."""
    from mbkernels.ops import triton_available, triton_interpreting

    cpu_ok = device.type == "cpu" and triton_interpreting()
    return triton_available() and (device.type == "cuda" or cpu_ok)


def _method_rows(
    cfg: OpConfig,
    grads: list[Tensor],
    compiled_step: Callable[..., Any] | None,
    base: dict[str, Any],
    ceiling: float,
    rows: list[dict[str, Any]],
    failures: list[str],
) -> dict[str, Any]:
    """Check every method against float64, time them in interleaved rounds, append rows."""
    device, t, log2n, n = grads[0].device, len(grads), base["log2_n"], base["n"]
    tol = TOLERANCE[cfg.dtype]
    sync = _sync_for(device)
    cands = _candidates(grads, device, compiled_step)
    ref = float64_step(grads)
    diffs = {name: _rel_diff(fn(), ref) for name, fn in cands.items()}
    del ref
    for name, d in diffs.items():
        if not d <= tol:  # NaN fails too
            failures.append(f"T={t} N=2^{log2n} {name}: {d:.3g} > {tol:g} vs float64")
    dst, src = torch.empty_like(grads[0]), grads[0]

    def copy_one(dst: Tensor = dst, src: Tensor = src) -> Tensor:
        return dst.copy_(src)

    timings = interleaved(
        {**cands, COPY: copy_one},
        rounds=cfg.rounds,
        warmup=1,
        min_sample_s=cfg.min_sample_s,
        sync=sync,
    )
    copy_case = timings.pop(COPY)
    copy_bps = 2 * n * grads[0].element_size() / copy_case.median
    del dst, src
    need = min_bytes(t, n, grads[0].element_size())
    base = {**base, "min_bytes": need}
    compiled = timings["compiled"].median if "compiled" in timings else None
    for name, tm in timings.items():
        rows.append(
            {
                **base,
                "method": name,
                **tm.as_dict(),
                "achieved_Bps": need / tm.median,
                "copy_Bps": copy_bps,
                "fraction_of_copy": need / tm.median / ceiling,
                "speedup_vs_naive": timings["naive"].median / tm.median,
                "speedup_vs_compiled": compiled / tm.median if compiled else None,
                "max_rel_diff_vs_float64": diffs[name],
            }
        )
    return timings


def _kernel_rows(
    cfg: OpConfig,
    grads: list[Tensor],
    base: dict[str, Any],
    ceiling: float,
    kernel_rows: list[dict[str, Any]],
    failures: list[str],
) -> None:
    """Check the Triton passes alone against float64, time them, append rows."""
    device, t, log2n = grads[0].device, len(grads), base["log2_n"]
    tol = TOLERANCE[cfg.dtype]
    for name, (fn, moved) in _kernel_candidates(grads).items():
        d = _rel_diff(fn(), _kernel_reference(name, grads))
        if not d <= tol:
            failures.append(f"T={t} N=2^{log2n} kernel {name}: {d:.3g} > {tol:g}")
        med, low = _time_kernel(fn, device, cfg.rounds)
        kernel_rows.append(
            {**base, "kernel": name, "bytes": moved, "median_s": med, "best_s": low,
             "achieved_Bps": moved / med, "fraction_of_copy": moved / med / ceiling,
             "timer": "do_bench" if device.type == "cuda" else "perf_counter",
             "max_rel_diff_vs_float64": d}
        )  # fmt: skip


def _progress_line(t: int, log2n: int, timings: dict[str, Any]) -> str:
    fused = timings["fused"].median
    line = f"T={t} N=2^{log2n}: fused {fused * 1e3:.3f} ms, "
    line += f"{timings['naive'].median / fused:.2f}x naive"
    if "compiled" in timings:
        line += f", {timings['compiled'].median / fused:.2f}x compiled"
    return line


def run_op(cfg: OpConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sweep; return a JSON-ready dict with one row per (T, N, method)."""
    device = torch.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    sync = _sync_for(device)
    compiled_step = torch.compile(naive_step, dynamic=True) if cfg.compile else None
    copy = copy_bandwidth(device, 1 << cfg.copy_log2, rounds=cfg.rounds, sync=sync)
    ceiling = copy["median_Bps"]
    tol = TOLERANCE[cfg.dtype]
    rows: list[dict[str, Any]] = []
    kernel_rows: list[dict[str, Any]] = []
    failures: list[str] = []
    gen = torch.Generator(device=device).manual_seed(0)
    for t in cfg.tasks:
        for log2n in cfg.log2_sizes:
            n = 1 << log2n
            # Gradients of very different magnitudes, as in a real multi-task model.
            grads = [
                torch.randn(n, generator=gen, device=device, dtype=dtype) * 10.0 ** (i % 4)
                for i in range(t)
            ]
            base = {"num_tasks": t, "log2_n": log2n, "n": n}
            if not cfg.kernels_only:
                timings = _method_rows(cfg, grads, compiled_step, base, ceiling, rows, failures)
                if progress is not None:
                    progress(_progress_line(t, log2n, timings))
            if cfg.kernels and kernels_runnable(device):
                before = len(kernel_rows)
                _kernel_rows(cfg, grads, base, ceiling, kernel_rows, failures)
                for r in kernel_rows[before:]:
                    if progress is not None:
                        progress(
                            f"T={t} N=2^{log2n} kernel {r['kernel']}: "
                            f"{r['median_s'] * 1e3:.3f} ms, {r['fraction_of_copy']:.0%} of copy, "
                            f"diff {r['max_rel_diff_vs_float64']:.1e}"
                        )
            del grads
    return {
        "benchmark": "op",
        "config": {
            "device": cfg.device,
            "dtype": cfg.dtype,
            "tasks": list(cfg.tasks),
            "log2_sizes": list(cfg.log2_sizes),
            "rounds": cfg.rounds,
            "compile": cfg.compile,
            "kernels": cfg.kernels,
            "kernels_only": cfg.kernels_only,
            "tolerance": tol,
            **cfg.extra,
        },
        "copy_bandwidth": copy,
        "rows": rows,
        "kernel_rows": kernel_rows,
        "failures": failures,
    }


def format_op(result: dict[str, Any]) -> str:
    """A plain-text table of an op result (median times)."""
    copy_gbs = result["copy_bandwidth"]["median_Bps"] / 1e9
    lines = [
        f"op benchmark on {result['config']['device']} ({result['config']['dtype']}); "
        f"copy bandwidth {copy_gbs:.1f} GB/s (read+write, median, "
        f"{result['copy_bandwidth']['bytes'] / 2**30:.2f} GiB moved)",
        "of copy = achieved bandwidth / that copy's; copy GB/s = a copy of one gradient in "
        "the same rounds (cached at small N)",
        f"{'T':>2} {'N':>6} {'method':>12} {'median ms':>10} {'best ms':>9} {'GB/s':>7} "
        f"{'copy GB/s':>9} {'of copy':>8} {'vs naive':>9} {'vs compiled':>12}",
    ]
    for r in result["rows"]:
        vc = r["speedup_vs_compiled"]
        lines.append(
            f"{r['num_tasks']:>2} {'2^' + str(r['log2_n']):>6} {r['method']:>12} "
            f"{r['median_s'] * 1e3:>10.3f} {r['best_s'] * 1e3:>9.3f} "
            f"{r['achieved_Bps'] / 1e9:>7.2f} {r['copy_Bps'] / 1e9:>9.2f} "
            f"{r['fraction_of_copy']:>8.0%} "
            f"{r['speedup_vs_naive']:>8.2f}x "
            + (f"{vc:>11.2f}x" if vc is not None and math.isfinite(vc) else f"{'-':>12}")
        )
    kernel_rows = result.get("kernel_rows", [])
    if kernel_rows:
        lines += [
            f"Triton passes alone ({kernel_rows[0]['timer']}, median; of copy as above):",
            f"{'T':>2} {'N':>6} {'kernel':>12} {'median ms':>10} {'GB/s':>7} {'of copy':>8}",
        ]
        for r in kernel_rows:
            lines.append(
                f"{r['num_tasks']:>2} {'2^' + str(r['log2_n']):>6} {r['kernel']:>12} "
                f"{r['median_s'] * 1e3:>10.3f} {r['achieved_Bps'] / 1e9:>7.2f} "
                f"{r['fraction_of_copy']:>8.0%}"
            )
    for failure in result.get("failures", []):
        lines.append(f"FAILED: {failure}")
    return "\n".join(lines)


def op_config(args: Any, device: str) -> OpConfig:
    """Build the sweep from command-line arguments (``--tiny`` < ``--quick`` < full)."""
    cuda = device.startswith("cuda")
    if getattr(args, "tiny", False):
        cfg = OpConfig(device, tasks=(2, 3), log2_sizes=(10, 13), rounds=2, min_sample_s=0.0)
        cfg.copy_log2 = 16
    elif args.quick:
        cfg = OpConfig(device, tasks=(2, 8), log2_sizes=(16, 20, 24), rounds=3, min_sample_s=0.02)
        cfg.copy_log2 = 26 if not cuda else 28
    else:
        cfg = OpConfig(device)
        cfg.copy_log2 = 26 if not cuda else 28
    if args.tasks:
        cfg.tasks = tuple(args.tasks)
    if args.log2_sizes:
        cfg.log2_sizes = tuple(args.log2_sizes)
    if args.rounds:
        cfg.rounds = args.rounds
    cfg.compile = not args.no_compile
    cfg.dtype = getattr(args, "dtype", None) or cfg.dtype
    cfg.kernels = not getattr(args, "no_kernels", False)
    cfg.kernels_only = getattr(args, "kernels_only", False)
    return cfg
