"""Benchmarks: training throughput, the fused op, memory.

Run ``python -m mbkernels.bench {throughput,op,all} [--quick] [--json PATH] [--html PATH]``;
``throughput --model small`` times the small models where the fixed per-step cost shows.
Every ratio is measured side by side in one run, with rounds interleaved so that
machine noise hits all candidates alike (:mod:`mbkernels.bench.timing`).
"""

from __future__ import annotations

__all__ = ["breakdown", "cli", "dlrm", "memory", "op", "report", "small", "throughput", "timing"]
