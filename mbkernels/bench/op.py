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
* ``fused_torch`` (CUDA only): the PyTorch path on the GPU, for comparison.
* ``naive``: ``torch.stack`` of the gradients, per-task norms, EMA, weights,
  broadcast weighted sum — what one writes without thinking about memory.
* ``compiled``: ``torch.compile`` of ``naive`` (the compiler may fuse what it can).

The minimum traffic of any two-pass step is ``(2T + 1) * N`` elements (read the T
gradients twice, write one output); achieved bandwidth is that divided by the
time, next to the device's measured copy bandwidth (read + write of one large
tensor) as the ceiling. All candidates of one (T, N) are timed in interleaved
rounds, and their outputs are checked against each other before timing. A plain
copy of one N-element gradient runs in the same rounds: ``fraction_of_copy`` is
the achieved bandwidth over that copy's (read + write) bandwidth, so a slow
phase of a shared machine slows the ceiling too; ``copy_bandwidth`` at the top
is one large copy measured once, for reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..balancer import Balancer
from ..rules import MultiBalanceRule
from .timing import interleaved

BETA, RELAX, EPS = 0.9, 0.7, 1e-8
COPY = "_copy"  # the same-round copy of one gradient (the ceiling), not a method


def naive_step(grads: list[Tensor], ema: Tensor) -> tuple[Tensor, Tensor]:
    """Textbook composition of one MultiBalance step (target task 0, no bias correction).

    Returns the combined gradient and the new EMA. Moves about ``(4T + 1) * N``
    elements plus the broadcast temporary: stack (read T, write T), norms (read T),
    weighted sum (read T into a ``[T, N]`` product, reduce, write 1).
    """
    g = torch.stack(grads)
    norms = torch.linalg.vector_norm(g, dim=1, dtype=torch.float32)
    new_ema = BETA * ema + (1.0 - BETA) * norms
    w = RELAX * new_ema[0] / (new_ema + EPS) + (1.0 - RELAX)
    w = torch.where(new_ema > 0, w, torch.ones_like(w))
    out = (w.to(g.dtype)[:, None] * g).sum(0)
    return out, new_ema


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
    extra: dict[str, Any] = field(default_factory=dict)


def _sync_for(device: torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


def _candidates(
    grads: list[Tensor], device: torch.device, compiled_step: Callable[..., Any] | None
) -> dict[str, Callable[[], Tensor]]:
    t = len(grads)
    cands: dict[str, Callable[[], Tensor]] = {}
    variants = (
        {"fused": ("auto", False), "fused_torch": ("torch", False)}
        if device.type == "cuda"
        else {"fused": ("auto", False), "fused_full": ("auto", True)}
    )
    for name, (backend, full_gram) in variants.items():
        rule = MultiBalanceRule(t, beta=BETA, relax=RELAX, eps=EPS, bias_correction=False)
        bal = Balancer(rule, backend=backend, full_gram=full_gram).to(device)

        def fused(bal: Balancer = bal) -> Tensor:
            out = bal._combine(grads)  # the fork's backward, without the model around it
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


def _max_rel_diff(outputs: dict[str, Tensor]) -> float:
    ref = outputs["naive"].double()
    scale = ref.abs().max().clamp_min(1e-30)
    return max(float((o.double() - ref).abs().max() / scale) for o in outputs.values())


def run_op(cfg: OpConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sweep; return a JSON-ready dict with one row per (T, N, method)."""
    device = torch.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    sync = _sync_for(device)
    compiled_step = torch.compile(naive_step, dynamic=True) if cfg.compile else None
    copy = copy_bandwidth(device, 1 << cfg.copy_log2, rounds=cfg.rounds, sync=sync)
    rows: list[dict[str, Any]] = []
    gen = torch.Generator(device=device).manual_seed(0)
    for t in cfg.tasks:
        for log2n in cfg.log2_sizes:
            n = 1 << log2n
            # Gradients of very different magnitudes, as in a real multi-task model.
            grads = [
                torch.randn(n, generator=gen, device=device, dtype=dtype) * 10.0 ** (i % 4)
                for i in range(t)
            ]
            cands = _candidates(grads, device, compiled_step)
            outputs = {name: fn() for name, fn in cands.items()}
            rel = _max_rel_diff(outputs)
            del outputs
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
            base = {"num_tasks": t, "log2_n": log2n, "n": n, "min_bytes": need}
            compiled = timings["compiled"].median if "compiled" in timings else None
            for name, tm in timings.items():
                rows.append(
                    {
                        **base,
                        "method": name,
                        **tm.as_dict(),
                        "achieved_Bps": need / tm.median,
                        "copy_Bps": copy_bps,
                        "fraction_of_copy": need / tm.median / copy_bps,
                        "speedup_vs_naive": timings["naive"].median / tm.median,
                        "speedup_vs_compiled": compiled / tm.median if compiled else None,
                        "max_rel_diff_vs_naive": rel,
                    }
                )
            if progress is not None:
                fused = timings["fused"].median
                progress(
                    f"T={t} N=2^{log2n}: fused {fused * 1e3:.3f} ms, "
                    f"{timings['naive'].median / fused:.2f}x naive"
                    + (
                        f", {timings['compiled'].median / fused:.2f}x compiled"
                        if "compiled" in timings
                        else ""
                    )
                )
            del grads, cands
    return {
        "benchmark": "op",
        "config": {
            "device": cfg.device,
            "dtype": cfg.dtype,
            "tasks": list(cfg.tasks),
            "log2_sizes": list(cfg.log2_sizes),
            "rounds": cfg.rounds,
            "compile": cfg.compile,
            **cfg.extra,
        },
        "copy_bandwidth": copy,
        "rows": rows,
    }


def format_op(result: dict[str, Any]) -> str:
    """A plain-text table of an op result (median times)."""
    copy_gbs = result["copy_bandwidth"]["median_Bps"] / 1e9
    lines = [
        f"op benchmark on {result['config']['device']} ({result['config']['dtype']}); "
        f"copy bandwidth {copy_gbs:.1f} GB/s (read+write, median)",
        "of copy = achieved bandwidth / bandwidth of a copy of one gradient in the same rounds",
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
    return cfg
