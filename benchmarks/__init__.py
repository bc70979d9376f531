"""Benchmarks: training throughput, the fused op, memory.

Run ``python -m benchmarks {throughput,op,all} [--quick] [--json PATH] [--html PATH]`` from
the repository root;
``throughput --model small`` times the small models where the fixed per-step cost shows.
Every ratio is measured side by side in one run, with rounds interleaved so that
machine noise hits all candidates alike (:mod:`mbviz.timing`).

This package is not in the wheel: a training job gets no benchmark code and no allocator
tuning. The pieces the course runs as well (the DLRM-style model, the throughput harness,
the interleaved timing) are in :mod:`mbviz`. The scripts next to it run as
``python -m benchmarks.<name>``.
"""

from __future__ import annotations

__all__ = ["breakdown", "cli", "malloc", "op", "report", "small", "throughput"]
