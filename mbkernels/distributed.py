"""Multi-process training: one all-reduce of the ``[T, T]`` Gram matrix per step.

Why the global Gram matrix is ``(1/R**2) * sum_r G_r``: with R ranks, each
computing the *mean* loss of its own B rows, DDP averages the parameter
gradients, so training equals one process minimising ``L = (1/R) sum_r L_r``
on the joint batch of ``R*B`` rows. The joint representation ``Z`` is the
concatenation of the per-rank ``Z_r`` (disjoint rows), so the joint task
gradient is the concatenation of the blocks ``(1/R) dL_t^r/dZ_r``, and

    <g_i, g_j>_joint = sum_r (1/R**2) <g_i^r, g_j^r> = (1/R**2) sum_r G_r[i, j].

One SUM all-reduce of the local Gram matrices, divided by ``R**2``, is the
exact Gram matrix of the single-process run (bit-exact division for R a power
of two), so every rank computes the same weights from the same statistics as
one process on the joint batch would. Each rank then applies them to its local
gradients; DDP's averaging of the parameter gradients does the rest.

(If you sum instead of average the losses across ranks, the Gram matrix
differs by the constant ``R**2``; MultiBalance weights depend on it only
through ``eps``.)

The all-reduce runs in float64 on the gradients' device (gloo on CPU, nccl on
CUDA), inside the backward pass. Every rank must run the balancer's backward
the same number of times. A dedicated group (``process_group=dist.new_group()``)
keeps this collective out of DDP's own bucket all-reduces.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def check_process_group(process_group: object) -> Any:
    """Validate ``process_group``: ``"auto"``, ``None``/``False`` (off) or a process group."""
    if process_group is None or process_group is False or process_group == "auto":
        return process_group
    if dist.is_available() and isinstance(process_group, dist.ProcessGroup):
        return process_group
    raise ValueError(
        "process_group must be 'auto', None, False or a torch.distributed.ProcessGroup, "
        f"got {process_group!r}"
    )


def active_group(process_group: Any) -> tuple[bool, Any]:
    """``(reduce?, group)`` for this step. ``"auto"`` reduces over the default group
    when torch.distributed is initialised with more than one rank."""
    if process_group is None or process_group is False:
        return False, None
    if not (dist.is_available() and dist.is_initialized()):
        if process_group == "auto":
            return False, None
        raise RuntimeError("a process_group was given but torch.distributed is not initialised")
    group = None if process_group == "auto" else process_group
    return dist.get_world_size(group) > 1, group


def all_reduce_gram(gram: Tensor, group: Any = None) -> Tensor:
    """Global Gram matrix ``(1/R**2) sum_r G_r`` (float64) over the ranks of ``group``."""
    world = dist.get_world_size(group)
    out = gram.to(torch.float64).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out / float(world * world)
