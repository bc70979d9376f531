"""Command line: ``python -m benchmarks {throughput,op,all} [options]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .malloc import describe, tune_glibc
from .report import environment, markdown, write_html, write_json


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of mbkernels: training throughput (with memory) and the fused op.",
    )
    p.add_argument("which", choices=["throughput", "op", "all"], help="what to run")
    p.add_argument("--quick", action="store_true", help="small sweep (a few minutes on a laptop)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own)"
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    p.add_argument("--tasks", type=int, nargs="+", default=None, help="numbers of tasks T")
    p.add_argument("--log2-sizes", type=int, nargs="+", default=None, help="op: log2 of N per task")
    p.add_argument("--batch", type=int, default=None, help="throughput: batch size")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="throughput: methods to time (default: all; 'sum', the baseline, is always run)",
    )
    p.add_argument(
        "--model",
        choices=["dlrm", "small", "tabular", "movielens"],
        default="dlrm",
        help="throughput: the DLRM-style model (default), or the small models where the "
        "balancer's fixed per-step cost shows ('small': tabular and movielens)",
    )
    p.add_argument("--no-compile", action="store_true", help="op: skip the torch.compile row")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], default=None,
        help="op: gradient dtype (default float32)",
    )  # fmt: skip
    p.add_argument(
        "--no-kernels", action="store_true", help="op: skip the rows of the Triton passes alone"
    )
    p.add_argument(
        "--kernels-only", action="store_true", help="op: only the rows of the Triton passes alone"
    )
    p.add_argument(
        "--malloc",
        choices=["tuned", "default"],
        default="tuned",
        help="CPU: 'tuned' keeps freed blocks up to 32 MiB in the process (glibc mallopt, the "
        "effect of jemalloc/tcmalloc; see benchmarks.malloc), 'default' keeps glibc's "
        "settings (default: tuned)",
    )
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test-suite size
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--html", default=None, help="write a plotly chart as HTML here")
    p.add_argument("--markdown", default=None, help="write Markdown tables here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be an integer in [1, inf), got {args.threads}")
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.malloc == "tuned":
        tune_glibc()
    results: dict[str, Any] = {"environment": {**environment(), "device": device, **describe()}}
    say = print
    say(f"allocator: {results['environment']['allocator']} (--malloc {args.malloc})")
    # Both configurations are built (and their arguments checked) before anything runs.
    from .op import format_op, op_config, run_op
    from .small import format_small, run_small, small_config
    from .throughput import format_throughput, run_throughput, throughput_config

    cfg = op_config(args, device) if args.which in ("op", "all") else None
    small = args.which in ("throughput", "all") and args.model != "dlrm"
    if small and args.device not in (None, "cpu"):
        raise ValueError(f"--model {args.model} runs on cpu only, got --device {args.device}")
    scfg = small_config(args) if small else None
    dlrm = args.which in ("throughput", "all") and not small
    tcfg = throughput_config(args, device) if dlrm else None
    if cfg is not None:
        results["op"] = run_op(cfg, progress=lambda s: say(s, file=sys.stderr, flush=True))
        say(format_op(results["op"]))
    if tcfg is not None:
        results["throughput"] = run_throughput(
            tcfg, progress=lambda s: say(s, file=sys.stderr, flush=True)
        )
        say(format_throughput(results["throughput"]))
    if scfg is not None:
        results["throughput_small"] = run_small(
            scfg, progress=lambda s: say(s, file=sys.stderr, flush=True)
        )
        say(format_small(results["throughput_small"]))
    if args.json:
        say(f"wrote {write_json(results, args.json)}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results))
        say(f"wrote {args.markdown}")
    if args.html:
        say(f"wrote {write_html(results, args.html)}")
    failures = results.get("op", {}).get("failures", [])
    if failures:  # after the files are written: the timings are kept, the run fails
        say(f"{len(failures)} results differ from float64 beyond tolerance:", file=sys.stderr)
        for f in failures:
            say(f"  {f}", file=sys.stderr)
        return 1
    return 0
