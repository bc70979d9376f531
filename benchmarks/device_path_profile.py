"""Where the host time of one balancing step goes on the GPU device path.

    python -m benchmarks.device_path_profile --json profile.json

On a GPU a small step is bound by the host: the kernels take microseconds, their
launches and the PyTorch calls around them take longer. For T tasks of N elements this
times, on the host (``perf_counter`` over many calls, no synchronisation inside), one
whole ``Balancer._combine`` with and without the range check and with the device path
off (the general tensor path), then each piece of the device path alone: the pointer
table, pass 1, the rule step, the range check's two predicated launches (unflagged: what
every in-range step pays for the check), pass 2, the commit, the refused-step watch. It prints the
functions that take the most host time (``cProfile``), and how far the device path's
weights are from the tensor rule run on the same Gram matrix (``max_ulp``: 0 is
bit for bit). ``--cpu``: the same code path on the CPU through the Triton interpreter
(the dry run; tiny sizes, timings meaningless).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mbkernels import _device
from mbkernels.balancer import Balancer
from mbkernels.ops import triton_ops, triton_rule
from mbkernels.rules import MultiBalanceRule


def host_us(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> float:
    """Mean host microseconds per call of ``fn`` (launches queue; one sync at the end)."""
    for _ in range(5):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    sync()
    return elapsed / calls * 1e6


def max_ulp(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest distance in float64 units in the last place between ``a`` and ``b``."""
    ia = a.double().cpu().view(torch.int64)
    ib = b.double().cpu().view(torch.int64)
    return int((ia - ib).abs().max())


def profile(t: int, n: int, device: torch.device, calls: int) -> dict[str, Any]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    grads = [torch.randn(n, device=device) * (i + 1) for i in range(t)]
    row: dict[str, Any] = {"tasks": t, "numel": n}
    for name, check, fast in (
        ("combine", True, True),
        ("combine_nocheck", False, True),
        ("combine_general", True, False),
    ):
        bal = Balancer(MultiBalanceRule(t), backend="triton", range_check=check).to(device)
        bal._device_rule = fast
        row[name] = host_us(lambda b=bal: b._combine(grads), calls, sync)
    bal = Balancer(MultiBalanceRule(t), backend="triton", range_check=False).to(device)
    state = _device.buffers(bal, grads[0])
    assert state is not None
    params = _device._params(bal, bal.rule, device)
    table = triton_ops.pointer_table(grads)
    partials = triton_ops.gram_partials(grads, table)
    record = triton_rule.multibalance_step(partials, None, params, bal.rule, state, n)
    weights = record[t * t : t * t + t]
    out = torch.empty(n, device=device)
    layout = triton_rule.RecordLayout(t)
    streak = record[layout.streak]
    flag = record[layout.range_flag :]  # 0.0: in range, both launches return at once
    exact = triton_ops.gram_float64_partials_if(grads, table, flag)
    pieces: dict[str, Callable[[], object]] = {
        "empty": lambda: torch.empty(n, device=device),
        "pointer_table": lambda: triton_ops.pointer_table(grads),
        "pass1": lambda: triton_ops.gram_partials(grads, table),
        "rule_step": lambda: triton_rule.multibalance_step(
            partials, None, params, bal.rule, state, n
        ),
        "pass1_float64_if": lambda: triton_ops.gram_float64_partials_if(grads, table, flag),
        "rule_step_redo": lambda: triton_rule.multibalance_step(
            exact, None, params, bal.rule, state, n, redo=record
        ),
        "pass2": lambda: triton_ops.weighted_sum_into(grads, weights, table, out),
        "commit": lambda: triton_rule.commit(record, dict(state)),
        "watch_refusals": lambda: bal._watch_refusals(streak),
    }
    row["pieces"] = {k: host_us(fn, calls, sync) for k, fn in pieces.items()}
    # the rule on the GPU against the tensor rule on the same Gram matrix
    a = Balancer(MultiBalanceRule(t), backend="triton", range_check=False).to(device)
    b = Balancer(MultiBalanceRule(t), backend="triton", range_check=False).to(device)
    ulps = []
    for _ in range(5):
        a._combine(grads)
        assert a.stats is not None
        ulps.append(max_ulp(a.stats.weights, b.step_weights(a.stats.gram)))
    row["max_ulp_vs_tensor_rule"] = max(ulps)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        a._combine(grads)
    prof.disable()
    sync()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(18)
    row["cprofile"] = text.getvalue()
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="dry run through the interpreter")
    p.add_argument("--tasks", type=int, nargs="+", default=[4, 8])
    p.add_argument("--log2-n", type=int, default=20)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.cpu else "cuda")
    n, calls = (1 << 8, 3) if args.cpu else (1 << args.log2_n, args.calls)
    rows = [profile(t, n, device, calls) for t in args.tasks]
    for r in rows:
        print(f"T={r['tasks']} N={r['numel']}: host µs per call")
        for k in ("combine", "combine_nocheck", "combine_general"):
            print(f"  {k:<18}{r[k]:9.1f}")
        for k, v in r["pieces"].items():
            print(f"  {'  ' + k:<18}{v:9.1f}")
        print(f"  weights vs the tensor rule: max {r['max_ulp_vs_tensor_rule']} ulp")
        print(r["cprofile"])
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
