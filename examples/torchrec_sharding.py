"""DistributedModelParallel for :class:`examples.torchrec_model.MultiTaskDLRM`: a sharding
plan (table-wise or row-wise, also on CPU), the unsharded tables copied into the shards,
the dense optimizer, and each rank's pieces of the tables."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.types import ShardingType
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from .torchrec_model import MultiTaskDLRM, table_name

SHARDINGS = {"table_wise": ShardingType.TABLE_WISE, "row_wise": ShardingType.ROW_WISE}


def shard(
    model: MultiTaskDLRM, sharding: str, lr: float, device: torch.device
) -> DistributedModelParallel:
    """Embedding tables sharded ``sharding`` (a key of :data:`SHARDINGS`) across the
    default group, updated by a fused SGD with learning rate ``lr`` in the backward pass;
    the rest data-parallel (DDP)."""
    apply_optimizer_in_backward(torch.optim.SGD, model.ebc.parameters(), {"lr": lr})
    world = dist.get_world_size()
    constraints = {
        table_name(f): ParameterConstraints(sharding_types=[SHARDINGS[sharding].value])
        for f in model.cfg.features
    }
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=world, compute_device=device.type),
        constraints=constraints,
    )
    sharders: list[Any] = [_Sharder()]
    plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
    tables = {k: v.detach().clone() for k, v in model.ebc.state_dict().items()}
    dmp = DistributedModelParallel(model, device=device, plan=plan, sharders=sharders)
    copy_tables(dmp, tables)
    return dmp


def copy_tables(dmp: DistributedModelParallel, tables: dict[str, Tensor]) -> None:
    """Write whole tables (``EmbeddingBagCollection.state_dict()`` keys) into this rank's
    shards. Sharding allocates the tables anew and initialises them itself; this gives
    them the values of the unsharded model (the single-process reference starts there)."""
    with torch.no_grad():
        for key, value in dmp.state_dict().items():
            name = key.split("ebc.", 1)[-1]
            if "ebc." not in key or name not in tables:
                continue
            for s in value.local_shards():
                (r0, c0), (nr, nc) = s.metadata.shard_offsets, s.metadata.shard_sizes
                s.tensor.copy_(tables[name][r0 : r0 + nr, c0 : c0 + nc])


class _Sharder(EmbeddingBagCollectionSharder):
    """TorchRec's sharder, with row-wise sharding offered on CPU too (its stock list
    offers it on CUDA only; the row-wise pooled-embedding exchange is a reduce-scatter,
    which gloo runs on CPU)."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types = list(super().sharding_types(compute_device_type))
        if ShardingType.ROW_WISE.value not in types:
            types.append(ShardingType.ROW_WISE.value)
        return types


def dense_optimizer(
    dmp: DistributedModelParallel, lr: float, momentum: float, adam: bool = False
) -> torch.optim.Optimizer:
    """SGD with momentum (or Adam) on the parameters the fused optimizer does not update."""
    params = [p for n, p in dmp.named_parameters() if "ebc." not in n]
    if adam:
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def local_shards(dmp: DistributedModelParallel) -> dict[str, list[tuple[list[int], Tensor]]]:
    """This rank's pieces of every embedding table: ``(row, column) offsets, values``."""
    out: dict[str, list[tuple[list[int], Tensor]]] = {}
    for key, value in dmp.state_dict().items():
        if "ebc." not in key or not hasattr(value, "local_shards"):
            continue
        name = key.split("module.", 1)[-1]
        out[name] = [
            (list(s.metadata.shard_offsets), s.tensor.detach().cpu().clone())
            for s in value.local_shards()
        ]
    return out
