"""Sizes of the throughput benchmark (``python -m benchmarks throughput``) from its command
line; the harness itself is :mod:`mbviz.dlrm_throughput`, which the course runs too."""

from __future__ import annotations

from typing import Any

from mbviz.dlrm import DLRMConfig
from mbviz.dlrm_throughput import (
    ThroughputConfig,
    available_methods,
    check_methods,
    format_throughput,
    run_throughput,
)

__all__ = ["format_throughput", "run_throughput", "throughput_config"]


def throughput_config(args: Any, device: str) -> ThroughputConfig:
    """Build the run from command-line arguments (``--tiny`` < ``--quick`` < full)."""
    if getattr(args, "tiny", False):
        cfg = ThroughputConfig(
            device,
            tasks=(2, 3),
            batch=64,
            model=DLRMConfig(
                num_tables=3,
                rows_per_table=50,
                embed_dim=8,
                dense_features=8,
                bottom=(16,),
                shared=(32, 16),
                tower=(8,),
            ),
            rounds=2,
            min_sample_s=0.0,
        )
    elif args.quick:
        cfg = ThroughputConfig(device, tasks=(2, 8), rounds=3, min_sample_s=0.3)
    else:
        cfg = ThroughputConfig(device)
    if args.tasks:
        cfg.tasks = tuple(args.tasks)
    if args.batch:
        cfg.batch = args.batch
    if args.rounds:
        cfg.rounds = args.rounds
    if getattr(args, "methods", None):
        check_methods(args.methods, available_methods(), "--methods")
        cfg.methods = ["sum", *dict.fromkeys(m for m in args.methods if m != "sum")]
    return cfg
