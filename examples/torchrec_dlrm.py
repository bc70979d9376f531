"""MultiBalance in a TorchRec job: DistributedModelParallel, sharded embeddings, one process
as the reference.

Run::

    python -m examples.torchrec_dlrm --nproc 2                      # synthetic Criteo-like
    python -m examples.torchrec_dlrm --nproc 2 --data movielens --sharding row_wise \
        --steps 300 --adam --lr 0.003 --table-lr 20
    python -m examples.torchrec_dlrm --nproc 2 --checkpoint /tmp/ckpt   # save, then resume

Each rank trains on its slice of every joint batch: ``DistributedModelParallel`` shards the
embedding tables (table-wise or row-wise; pooled embeddings travel by all-to-all) and wraps
the dense part in DDP; the embedding tables are updated by TorchRec's fused optimizer in
the backward pass, the dense parameters by an ordinary one. The balancer all-reduces its
``[T, T]`` Gram matrix over the default group, so every rank applies the joint batch's
weights. gloo on CPU; nccl when there is one CUDA device per rank (same code).

At the end: AUC and NE (binary tasks) or RMSE on held-out rows, gathered from all ranks;
the same run in one process on the joint batches, and how far the two are apart. With
``--checkpoint DIR``: after ``--steps`` steps the job saves DMP's state dict (sharded
tables, dense parameters, the balancer's EMA and step) with torch.distributed.checkpoint,
plus the dense optimizer's state, and a second job restores it into a fresh DMP model and
trains ``--resume-steps`` more.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torchrec.distributed.model_parallel import DistributedModelParallel

import mbkernels as mbk
from mbkernels.validation import check_float, check_int

from .torchrec_checkpoint import load_checkpoint, save_checkpoint
from .torchrec_data import (
    JointBatch,
    movielens_batches,
    movielens_config,
    synthetic_batches,
    synthetic_config,
)
from .torchrec_model import ModelConfig, MultiTaskDLRM
from .torchrec_sharding import SHARDINGS, dense_optimizer, local_shards, shard


@dataclass(frozen=True)
class Config:
    nproc: int = 2
    data: str = "synthetic"  # or "movielens"
    sharding: str = "table_wise"  # or "row_wise"
    steps: int = 20
    batch_per_rank: int = 256
    num_tasks: int = 4  # synthetic data only (MovieLens has 3)
    num_sparse: int = 8
    rows_per_table: int = 1000
    max_users: int | None = None  # MovieLens: a subset of users
    lr: float = 0.05  # the dense optimizer's
    table_lr: float = 0.05  # the embedding tables' SGD (fused into the backward by DMP)
    momentum: float = 0.9  # the dense optimizer's (its state is checkpointed)
    adam: bool = False  # the dense optimizer: Adam(lr) instead of SGD with momentum
    seed: int = 0
    balance: bool = True  # False: the plain sum of the losses
    nonfinite: str = "skip_update"
    #: (step, rank, task): on that step that rank's gradient of that task at Z gets a NaN.
    nan_at: tuple[int, int, int] | None = None
    eval_batches: int = 4  # held-out joint batches for the metrics

    def __post_init__(self) -> None:
        check_int("nproc", self.nproc, low=1)
        check_int("steps", self.steps, low=0)
        check_int("batch_per_rank", self.batch_per_rank, low=1)
        check_float("lr", self.lr, low=0.0, high=10.0, low_open=True)
        check_float("table_lr", self.table_lr, low=0.0, high=1000.0, low_open=True)
        check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        if self.data not in ("synthetic", "movielens"):
            raise ValueError(f"data must be 'synthetic' or 'movielens', got {self.data!r}")
        if self.sharding not in SHARDINGS:
            raise ValueError(f"sharding must be one of {sorted(SHARDINGS)}, got {self.sharding!r}")
        if self.nonfinite not in mbk.NONFINITE_POLICIES:
            raise ValueError(
                f"nonfinite must be one of {mbk.NONFINITE_POLICIES}, got {self.nonfinite!r}"
            )

    @property
    def joint_batch(self) -> int:
        return self.nproc * self.batch_per_rank


def model_config(cfg: Config) -> ModelConfig:
    if cfg.data == "movielens":
        return movielens_config(max_users=cfg.max_users)
    return synthetic_config(cfg.num_tasks, cfg.num_sparse, cfg.rows_per_table)


def batches(
    cfg: Config, mcfg: ModelConfig, *, start: int = 0, eval: bool = False
) -> Iterator[JointBatch]:
    """The joint training batches from step ``start`` on (or the held-out ones)."""
    if cfg.data == "movielens":
        split, steps = ("val", cfg.eval_batches) if eval else ("train", cfg.steps)
        it = movielens_batches(
            cfg.joint_batch, steps, split=split, seed=cfg.seed, max_users=cfg.max_users
        )
    else:
        seed = cfg.seed + (1000 if eval else 0)
        steps = cfg.eval_batches if eval else cfg.steps
        it = synthetic_batches(mcfg, cfg.joint_batch, steps, seed=seed)
    for i, b in enumerate(it):
        if i >= start:
            yield b


def new_model(cfg: Config, mcfg: ModelConfig, device: torch.device | str = "cpu") -> MultiTaskDLRM:
    """The model with its initial parameters (the same in every process)."""
    torch.manual_seed(cfg.seed)
    bal = mbk.MultiBalance(mcfg.num_tasks, nonfinite=cfg.nonfinite) if cfg.balance else None
    return MultiTaskDLRM(mcfg, balancer=bal, device=device)


def _nan_hook(cfg: Config, step: int, rank: int) -> Callable[[tuple[Tensor, ...]], None] | None:
    """A hook that puts a NaN into one task's gradient at Z (``cfg.nan_at``)."""
    if cfg.nan_at is None or cfg.nan_at[:2] != (step, rank):
        return None
    task = cfg.nan_at[2]

    def hook(zs: tuple[Tensor, ...]) -> None:
        def poison(g: Tensor) -> Tensor:
            g = g.clone()
            g.view(-1)[0] = float("nan")
            return g

        zs[task].register_hook(poison)

    return hook


class _ForkTap:
    """Forward hook on the balancer: hands its outputs to ``fn`` (to poison one gradient)."""

    def __init__(self, balancer: nn.Module) -> None:
        self.fn: Callable[[tuple[Tensor, ...]], None] | None = None
        balancer.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, out: tuple[Tensor, ...]) -> None:
        if self.fn is not None:
            self.fn(out)


# ----------------------------------------------------------------- one process


def train_single(cfg: Config) -> dict[str, Any]:
    """One process on the joint batches, plain (unsharded) TorchRec model: the reference."""
    mcfg = model_config(cfg)
    model = new_model(cfg, mcfg)
    tables = list(model.ebc.parameters())
    table_ids = {id(p) for p in tables}
    dense = [p for p in model.parameters() if id(p) not in table_ids]
    emb_opt = torch.optim.SGD(tables, lr=cfg.table_lr)
    opt = (
        torch.optim.Adam(dense, lr=cfg.lr)
        if cfg.adam
        else torch.optim.SGD(dense, lr=cfg.lr, momentum=cfg.momentum)
    )
    weights = []
    for b in batches(cfg, mcfg):
        emb_opt.zero_grad()
        opt.zero_grad()
        model(b.rows(0, len(b)))[0].backward()
        emb_opt.step()
        opt.step()
        if model.balancer is not None:
            weights.append(model.balancer.weights.detach().clone())
    return {
        "weights": torch.stack(weights) if weights else torch.empty(0),
        "dense": _flat_dense(model),
        "tables": {n: p.detach().clone() for n, p in model.ebc.named_parameters()},
        "metrics": evaluate(cfg, mcfg, model, 0, 1),
    }


def _flat_dense(model: nn.Module) -> Tensor:
    return torch.cat(
        [p.detach().flatten().cpu() for n, p in model.named_parameters() if "ebc." not in n]
    )


# ----------------------------------------------------------------- the DMP job


def train_steps(
    dmp: DistributedModelParallel,
    opt: torch.optim.Optimizer,
    cfg: Config,
    rank: int,
    device: torch.device,
    *,
    start: int = 0,
    stop: int | None = None,
) -> list[Tensor]:
    """Steps ``[start, stop)`` on this rank's rows; the balancer's weights after each."""
    mcfg: ModelConfig = dmp.module.cfg
    balancer = dmp.module.balancer
    tap = _ForkTap(balancer) if balancer is not None else None
    lo, hi = rank * cfg.batch_per_rank, (rank + 1) * cfg.batch_per_rank
    weights = []
    stop = cfg.steps if stop is None else stop
    for step, b in enumerate(batches(replace(cfg, steps=stop), mcfg, start=start), start=start):
        if tap is not None:
            tap.fn = _nan_hook(cfg, step, rank)
        opt.zero_grad()
        loss, _ = dmp(b.rows(lo, hi).to(device))
        loss.backward()
        opt.step()
        if balancer is not None:
            weights.append(balancer.weights.detach().cpu().clone())
    return weights


@torch.no_grad()
def evaluate(
    cfg: Config, mcfg: ModelConfig, model: nn.Module, rank: int, world: int
) -> dict[str, dict[str, float]]:
    """Metrics per task on the held-out joint batches; each rank scores its rows, the
    logits are gathered from all ranks (an ``all_gather``) and every rank computes the
    same metrics on the whole held-out set."""
    from mbviz.metrics import task_metrics

    logits, labels, masks = [], [], []
    device = next(p for n, p in model.named_parameters() if "ebc." not in n).device
    for b in batches(cfg, mcfg, eval=True):
        per = len(b) // world
        if per == 0:
            continue
        out = model(b.rows(rank * per, (rank + 1) * per).to(device))[1].cpu()
        if world > 1:
            parts = [torch.empty_like(out) for _ in range(world)]
            dist.all_gather(parts, out.to(device))
            out = torch.cat([p.cpu() for p in parts])
        logits.append(out)
        labels.append(b.labels[: per * world])
        masks.append(b.mask[: per * world])
    y, m, lg = torch.cat(labels), torch.cat(masks), torch.cat(logits)
    return {
        f"task{t}": task_metrics(kind, y[m[:, t], t].numpy(), lg[m[:, t], t].numpy())
        for t, kind in enumerate(mcfg.task_kinds)
    }


def _init(rank: int, cfg: Config, init_file: str) -> torch.device:
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= cfg.nproc
    device = torch.device(f"cuda:{rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    dist.init_process_group(
        "nccl" if use_cuda else "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=cfg.nproc,
    )
    return device


def _worker(rank: int, cfg: Config, init_file: str, out_dir: str, job: str) -> None:
    """``job``: "train" (``cfg.steps`` steps), "save" (also checkpoint to ``out_dir/ckpt``),
    or "resume:N" (restore ``out_dir/ckpt``, train N more steps)."""
    device = _init(rank, cfg, init_file)
    try:
        mcfg = model_config(cfg)
        dmp = shard(new_model(cfg, mcfg), cfg.sharding, cfg.table_lr, device)
        opt = dense_optimizer(dmp, cfg.lr, cfg.momentum, cfg.adam)
        ckpt = Path(out_dir) / "ckpt"
        start, stop = 0, cfg.steps
        if job.startswith("resume:"):
            load_checkpoint(dmp, opt, ckpt, rank)
            start, stop = cfg.steps, cfg.steps + int(job.split(":")[1])
        weights = train_steps(dmp, opt, cfg, rank, device, start=start, stop=stop)
        if job == "save":
            save_checkpoint(dmp, opt, ckpt, rank)
        balancer = dmp.module.balancer
        result = {
            "weights": torch.stack(weights) if weights else torch.empty(0),
            "dense": _flat_dense(dmp),
            "shards": local_shards(dmp),
            "balancer": {
                k: v.clone() for k, v in balancer.state_dict().items() if isinstance(v, Tensor)
            }
            if balancer is not None
            else {},
            "metrics": evaluate(cfg, mcfg, dmp, rank, cfg.nproc),
        }
        torch.save(result, Path(out_dir) / f"{job.replace(':', '_')}_rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    # As in mbkernels.examples.ddp: end without destructors (gloo's group teardown can hang).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_job(cfg: Config, job: str = "train", out_dir: str | None = None) -> list[dict[str, Any]]:
    """Spawn ``cfg.nproc`` ranks running ``job``; return each rank's result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = out_dir or tmp
        init_file = os.path.join(tmp, f"init_{job.replace(':', '_')}")
        mp.spawn(_worker, args=(cfg, init_file, out, job), nprocs=cfg.nproc, join=True)
        return [
            torch.load(Path(out) / f"{job.replace(':', '_')}_rank{r}.pt", weights_only=False)
            for r in range(cfg.nproc)
        ]


def compare(ranks: list[dict[str, Any]], single: dict[str, Any]) -> dict[str, float]:
    """How far the ranks are from each other and from one process."""
    w0 = ranks[0]["weights"]
    table_diff = 0.0
    for res in ranks:
        for name, pieces in res["shards"].items():
            full = single["tables"][name.replace("ebc.", "", 1)]
            for (r0, c0), piece in pieces:
                ref = full[r0 : r0 + piece.shape[0], c0 : c0 + piece.shape[1]]
                table_diff = max(table_diff, float((piece - ref).abs().max()))
    return {
        "weights_equal_across_ranks": float(all(torch.equal(r["weights"], w0) for r in ranks)),
        "max_weight_diff_vs_single": float((w0 - single["weights"]).abs().max())
        if w0.numel()
        else 0.0,
        "max_dense_diff_vs_single": max(
            float((r["dense"] - single["dense"]).abs().max()) for r in ranks
        ),
        "max_table_diff_vs_single": table_diff,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--data", choices=("synthetic", "movielens"), default="synthetic")
    parser.add_argument("--sharding", choices=sorted(SHARDINGS), default="table_wise")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-per-rank", type=int, default=256)
    parser.add_argument("--tasks", type=int, default=4, help="synthetic data: number of tasks")
    parser.add_argument("--max-users", type=int, default=None, help="MovieLens: a user subset")
    parser.add_argument("--no-balance", action="store_true", help="the plain sum of the losses")
    parser.add_argument("--lr", type=float, default=0.05, help="the dense optimizer's")
    parser.add_argument("--table-lr", type=float, default=0.05, help="the tables' fused SGD")
    parser.add_argument("--adam", action="store_true", help="Adam for the dense parameters")
    parser.add_argument("--checkpoint", default=None, help="save here, then resume in a new job")
    parser.add_argument("--resume-steps", type=int, default=5)
    args = parser.parse_args(argv)
    cfg = Config(
        nproc=args.nproc,
        data=args.data,
        sharding=args.sharding,
        steps=args.steps,
        batch_per_rank=args.batch_per_rank,
        num_tasks=args.tasks,
        max_users=args.max_users,
        balance=not args.no_balance,
        lr=args.lr,
        table_lr=args.table_lr,
        adam=args.adam,
    )
    ranks = run_job(cfg, "save" if args.checkpoint else "train", args.checkpoint)
    single = train_single(cfg)
    print(
        f"{cfg.data}, {cfg.nproc} ranks ({cfg.sharding}), {cfg.steps} steps of "
        f"{cfg.batch_per_rank} rows per rank"
    )
    for key, value in compare(ranks, single).items():
        print(f"  {key}: {value:.3g}")
    if ranks[0]["weights"].numel():
        print(f"  last weights: {[round(w, 4) for w in ranks[0]['weights'][-1].tolist()]}")
    for task, m in ranks[0]["metrics"].items():
        print(f"  {task}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    if args.checkpoint:
        resumed = run_job(cfg, f"resume:{args.resume_steps}", args.checkpoint)
        print(
            f"restored from {args.checkpoint} into a fresh DMP job, "
            f"{args.resume_steps} more steps; last weights "
            f"{[round(w, 4) for w in resumed[0]['weights'][-1].tolist()]}"
        )


if __name__ == "__main__":
    main()
