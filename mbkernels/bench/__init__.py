"""Benchmarks: training throughput, the fused op, memory.

Run ``python -m mbkernels.bench {throughput,op,all} [--quick] [--json PATH] [--html PATH]``.
Every ratio is measured side by side in one run, with rounds interleaved so that
machine noise hits all candidates alike (:mod:`mbkernels.bench.timing`).
"""

from __future__ import annotations

__all__ = ["cli", "dlrm", "memory", "op", "report", "throughput", "timing"]
