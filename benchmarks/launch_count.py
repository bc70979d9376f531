"""Kernel launches and host synchronisations per balanced step, counted by torch.profiler.

    python -m benchmarks.launch_count --device cuda --json launches.json

Counts, per step (averaged over ``--steps`` profiled steps after warm-up):

* ``combine``: the balancing step alone, what the fork's backward runs
  (``Balancer.combine`` on T gradients of N elements), for a default
  ``MultiBalance`` and with ``range_check=False``;
* ``train``: one whole DLRM training step (forward, backward, SGD) with the plain
  sum of losses and with ``MultiBalance``; their difference is what balancing adds.

On CUDA: ``kernels`` = kernels the GPU ran, ``memcpy``/``memset`` = copies and fills,
``launch_calls`` = host launch API calls (runtime and driver: Triton launches through
the driver), ``syncs`` = host calls that wait for the GPU (stream, device or event
synchronisation; a ``bool()`` or ``.item()`` on a GPU tensor is one). On CPU only the
code path runs (no GPU events: the counts are 0), which is what the dry run checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from mbkernels.balancer import Balancer
from mbkernels.rules import MultiBalanceRule
from mbviz.dlrm import DLRMConfig
from mbviz.dlrm_throughput import ThroughputConfig, build_methods

LAUNCH_CALLS = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx"}
TINY_DLRM = DLRMConfig(
    num_tables=2, rows_per_table=50, embed_dim=8, dense_features=8, bottom=(16,),
    shared=(32, 16), tower=(8,),
)  # fmt: skip
SYNC_CALLS = {"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"}


def count(fn: Callable[[], object], device: torch.device, steps: int) -> dict[str, float]:
    """Per-call counts of GPU work and host calls over ``steps`` profiled calls."""
    for _ in range(3):  # warm-up: compilation, caches, allocator
        fn()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        if cuda:
            torch.cuda.synchronize(device)
    totals = {"kernels": 0, "memcpy": 0, "memset": 0, "launch_calls": 0, "syncs": 0}
    for e in prof.events():
        on_gpu = str(e.device_type).endswith("CUDA")
        if on_gpu:
            kind = "memcpy" if "Memcpy" in e.name else "memset" if "Memset" in e.name else "kernels"
            totals[kind] += 1
        elif e.name in LAUNCH_CALLS:
            totals["launch_calls"] += 1
        elif e.name in SYNC_CALLS:
            totals["syncs"] += 1
    if cuda:
        totals["syncs"] -= 1  # the one after the profiled steps
    return {k: v / steps for k, v in totals.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tasks", type=int, nargs="+", default=[4, 8])
    p.add_argument("--log2-n", type=int, default=22, help="combine: log2 of N per task")
    p.add_argument("--batch", type=int, default=2048, help="train: DLRM batch")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="small DLRM (CPU dry run)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    for t in args.tasks:
        grads = [torch.randn(1 << args.log2_n, device=device) for _ in range(t)]
        for check, fast in ((True, True), (False, True), (True, False), (False, False)):
            bal = Balancer(MultiBalanceRule(t), range_check=check, fast_paths=fast).to(device)
            counts = count(lambda b=bal, g=grads: b.combine(g), device, args.steps)
            what = "combine" if fast else "combine_general"
            rows.append({"what": what, "tasks": t, "range_check": check, **counts})
        del grads
        cfg = ThroughputConfig(args.device, batch=args.batch)
        if args.tiny:
            cfg.model = TINY_DLRM
        methods, _ = build_methods(cfg, t, ["sum", "multibalance", "multibalance_tensor"])
        for name, method in methods.items():
            counts = count(method.step, device, args.steps)
            rows.append({"what": f"train_{name}", "tasks": t, "batch": cfg.batch, **counts})
    head = (
        f"{'what':<28}{'T':>3}{'kernels':>9}{'memcpy':>8}{'memset':>8}{'launches':>10}{'syncs':>7}"
    )
    print(f"{args.device}: per step\n{head}")
    for r in rows:
        what = r["what"] + ("" if r.get("range_check", True) else " (no check)")
        print(
            f"{what:<28}{r['tasks']:>3}{r['kernels']:>9.1f}{r['memcpy']:>8.1f}"
            f"{r['memset']:>8.1f}{r['launch_calls']:>10.1f}{r['syncs']:>7.1f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
