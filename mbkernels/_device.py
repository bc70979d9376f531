"""The fork's backward on a GPU for MultiBalance: Triton programs and no rule ops.

The general tensor path runs the rule and its state handling as PyTorch ops, about
45 small kernels per step, each with a few microseconds of host work: about 1 ms
per step whatever the size of the gradients, with the GPU waiting on the host
(``benchmarks/launch_count.py``). Here a step is

1. one copy of the gradients' addresses to the device (shared by both passes);
2. pass 1 (:func:`~mbkernels.ops.triton_ops.gram_partials`);
3. the rule step (:func:`~mbkernels.ops.triton_rule.multibalance_step`), which writes
   its proposal to a fresh record;
4. pass 2 with the record's weights;
5. the commit (:func:`~mbkernels.ops.triton_rule.commit`), after pass 2 is queued: an
   error before it leaves the state as it was.

With ``range_check=True`` (float32 and bfloat16 gradients) step 3 sets the record's
range flag when pass 1's float32 accumulation left float32's range, and two more
launches follow it, both predicated on the flag on the device: pass 1 again in
float64 (:func:`~mbkernels.ops.triton_ops.gram_float64_partials_if`) and the rule step
again from that Gram matrix, into the same record. Unflagged, both return at once. No
step waits for the GPU, with or without the check.

With a Gram reduction (``gram_reduce``, or the process group's all-reduce) pass 1's
partials are summed and reduced as on the general path between 2 and 3; the range
check then reads the local diagonal on the host before the reduction, as the general
path does (one synchronisation per step), and hands a flagged step to the general path.

:class:`~mbkernels.Balancer` takes this path for a
:class:`~mbkernels.rules.MultiBalanceRule` on the Triton backend (CUDA, or the CPU
under ``TRITON_INTERPRET=1``) when every task has a gradient, the non-finite policy
is ``"skip_update"`` (or a GradScaler makes it so) and the buffers are on the
gradients' device in their own dtypes. Its results agree with the general path to
float64 rounding (``tests/test_device_path.py``); :attr:`Balancer.stats` is built
from the record when read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .amp import current_scale
from .distributed import active_group
from .numerics import _diagonal_needs_float64
from .ops import resolve_backend
from .rules.multibalance import MultiBalanceRule
from .stats import BalanceStats

if TYPE_CHECKING:
    from .balancer import Balancer

#: The buffers the kernels read and the commit writes, with the dtypes they assume.
DTYPES = {
    "ema": torch.float32,
    "count": torch.int64,
    "step": torch.int64,
    "weights": torch.float64,
    "refused_streak": torch.int64,
}
_GRAD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def has_device_step(rule: object) -> bool:
    """Whether ``rule`` is the one the kernel implements (a subclass may change what
    ``weights`` computes, so only the class itself qualifies)."""
    return type(rule) is MultiBalanceRule


def buffers(bal: Balancer, grad: Tensor) -> dict[str, Tensor] | None:
    """The state buffers if this step may take the device path, else ``None``."""
    # Triton runs on CUDA, or on the CPU under TRITON_INTERPRET with backend="triton":
    # a plain CPU step is answered before resolve_backend's checks
    if not (grad.is_cuda or bal.backend == "triton"):
        return None
    if grad.dtype not in _GRAD_DTYPES or grad.numel() == 0:
        return None
    if resolve_backend(bal.backend, grad.device, grad.dtype) != "triton":
        return None
    if bal.nonfinite != "skip_update" and current_scale(bal.grad_scaler) is None:
        return None
    state = bal._buffers
    out: dict[str, Tensor] = {}
    for name, dtype in DTYPES.items():
        buf = state[name]
        if buf is None or buf.dtype != dtype or buf.device != grad.device:
            return None
        if not buf.is_contiguous():
            return None
        out[name] = buf
    return out


def combine(bal: Balancer, grads: Sequence[Tensor], state: dict[str, Tensor]) -> Tensor | None:
    """One balancing step on the device path; ``None`` when a Gram reduction's range
    check hands the step to the general path (nothing has changed then)."""
    from .ops import triton_ops, triton_rule

    grads = [g if g.is_contiguous() else g.contiguous() for g in grads]
    g0 = grads[0]
    device, n = g0.device, g0.numel()
    rule = bal.rule
    assert isinstance(rule, MultiBalanceRule)
    # Allocated before anything is proposed: from the rule step on, only launches remain.
    out = torch.empty(n, dtype=g0.dtype, device=device)
    table = triton_ops.pointer_table(grads)
    partials = triton_ops.gram_partials(grads, table)
    check = bal.range_check and g0.dtype != torch.float16
    reduce, _ = active_group(bal.process_group)
    gram: Tensor = partials
    if reduce or bal.gram_reduce is not None:
        t = rule.num_tasks
        local = partials.sum(dim=0)[:t, :t]
        if check and bool(_diagonal_needs_float64(local.diagonal(), n)):
            return None
        gram = bal._reduce(local).to(torch.float64).contiguous()
        check = False
    params = _params(bal, rule, device)
    scale = current_scale(bal.grad_scaler)
    layout = triton_rule.RecordLayout(rule.num_tasks)
    with triton_ops.on_device(device):
        record = triton_rule.multibalance_step(gram, scale, params, rule, state, n)
        if check:  # decided on the device: both launches return at once unless flagged
            flag = record[layout.range_flag :]
            exact = triton_ops.gram_float64_partials_if(grads, table, flag)
            triton_rule.multibalance_step(exact, scale, params, rule, state, n, redo=record)
    weights = record[layout.weights : layout.weights + rule.num_tasks]
    triton_ops.weighted_sum_into(grads, weights, table, out)
    with triton_ops.on_device(device):
        triton_rule.commit(record, state)
    bal.__dict__["_stats"] = None
    bal.__dict__["_host_record"] = None
    bal.__dict__["_device_record"] = record
    bal._watch_refusals(record[layout.streak])
    return out.view(g0.shape)


def _params(bal: Balancer, rule: MultiBalanceRule, device: torch.device) -> Tensor:
    """The rule's hyperparameters on ``device``, made once per device and values."""
    key = (device, rule.beta, rule.relax, rule.eps)
    cached = bal.__dict__.get("_device_params")
    if cached is None or cached[0] != key:
        from .ops.triton_rule import rule_params

        cached = (key, rule_params(rule, device))
        bal.__dict__["_device_params"] = cached
    return cached[1]


def stats(record: Tensor, num_tasks: int) -> BalanceStats:
    """The :class:`BalanceStats` of a device-path step, from its record."""
    from .ops.triton_rule import RecordLayout

    t, lay = num_tasks, RecordLayout(num_tasks)
    return BalanceStats(
        gram=record[: t * t].view(t, t),
        norms=record[lay.norms : lay.norms + t],
        weights=record[lay.weights : lay.weights + t],
        state={
            "ema": record[lay.ema : lay.ema + t].to(torch.float32),
            "count": record[lay.count : lay.count + t].to(torch.int64),
        },
        step=record[lay.step].to(torch.int64),
        finite=record[lay.finite] != 0,
        refused_streak=record[lay.streak].to(torch.int64),
    )
