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

from collections.abc import Sequence
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


def joint_mean_losses(
    loss_sums: Sequence[Tensor],
    counts: Sequence[int | Tensor],
    *,
    process_group: Any = "auto",
) -> list[Tensor]:
    """Each task's loss as this rank's share of its mean over the labelled rows of the
    *joint* batch, for tasks that label only some rows (a like or a rating exists only for
    rated items).

    ``loss_sums[t]`` is this rank's loss summed over its labelled rows of task ``t``,
    ``counts[t]`` how many rows that is. With ``R`` ranks and ``N_t`` labelled rows in all,
    rank ``r`` returns ``R * S_t^r / N_t``: DDP's average of the parameter gradients is then
    the gradient of the joint mean ``sum_r S_t^r / N_t``, and the balancer's all-reduced
    Gram matrix is exactly the single-process one. A per-rank mean ``S_t^r / n_t^r`` is
    exact only when every rank has the same number of labelled rows of each task.

    One all-reduce of the ``T`` counts (float64, on the losses' device) when
    torch.distributed is initialised with more than one rank (``process_group`` as for
    :class:`~mbkernels.Balancer`); otherwise the plain means ``S_t / n_t``. A task with no
    labelled row anywhere gets its (zero) sum back.
    """
    if len(loss_sums) == 0 or len(loss_sums) != len(counts):
        raise ValueError(
            "loss_sums and counts must be non-empty and of the same length, got "
            f"{len(loss_sums)} and {len(counts)}"
        )
    if not all(isinstance(s, Tensor) and s.dim() == 0 for s in loss_sums):
        raise ValueError("loss_sums must be 0-d tensors (each task's summed loss on this rank)")
    device = loss_sums[0].device
    local = torch.stack(
        [torch.as_tensor(c, dtype=torch.float64, device=device).reshape(()) for c in counts]
    )
    if bool((local < 0).any()) or not bool(torch.isfinite(local).all()):
        raise ValueError(f"counts must be finite numbers >= 0, got {local.tolist()}")
    reduce, group = active_group(check_process_group(process_group))
    total, world = local, 1
    if reduce:
        total = local.clone()
        dist.all_reduce(total, group=group)
        world = dist.get_world_size(group)
    scale = world / total.clamp_min(1.0)
    return [s * scale[t].to(s.dtype) for t, s in enumerate(loss_sums)]
