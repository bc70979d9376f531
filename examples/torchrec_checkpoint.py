"""Checkpoints of a DistributedModelParallel job with MultiBalance inside: the model's
(sharded) state dict through torch.distributed.checkpoint, the rest with ``torch.save``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torchrec.distributed.model_parallel import DistributedModelParallel


def _split_extra(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensors, extra)``: the ``..._extra_state`` entries (the balancer's rule name and
    configuration, a small nested dict) apart from the rest."""
    extra = {k: v for k, v in state.items() if k.endswith("_extra_state")}
    return {k: v for k, v in state.items() if k not in extra}, extra


def save_checkpoint(
    dmp: DistributedModelParallel, opt: torch.optim.Optimizer, ckpt: Path, rank: int
) -> None:
    """DMP's state dict (sharded tables as ShardedTensor, dense parameters, the balancer's
    EMA, counts, step and weights) with torch.distributed.checkpoint; the ``_extra_state``
    entries and the dense optimizer's state (momentum) with ``torch.save``, per rank.

    The extra states stay out of DCP: under table-wise sharding each rank's state dict
    names only its own tables, DCP's loader then takes the checkpoint for one from torch
    <= 2.3 and flattens nested entries the old way, and the balancer's ``_extra_state``
    goes missing ("Missing key in checkpoint state_dict")."""
    tensors, extra = _split_extra(dmp.state_dict())
    dcp.save({"model": tensors}, checkpoint_id=str(ckpt / "model"))
    torch.save({"extra": extra, "opt": opt.state_dict()}, ckpt / f"rank{rank}.pt")


def load_checkpoint(
    dmp: DistributedModelParallel, opt: torch.optim.Optimizer, ckpt: Path, rank: int
) -> None:
    """Restore :func:`save_checkpoint`'s files into a freshly built DMP model: DCP fills
    the model's own (sharded) state dict in place, the balancer validates its state and
    saved configuration in ``load_state_dict``."""
    tensors, _ = _split_extra(dmp.state_dict())
    state = {"model": tensors}
    dcp.load(state, checkpoint_id=str(ckpt / "model"))
    local = torch.load(ckpt / f"rank{rank}.pt", weights_only=True)
    dmp.load_state_dict({**state["model"], **local["extra"]})
    opt.load_state_dict(local["opt"])
