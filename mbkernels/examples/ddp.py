"""MultiBalance under DistributedDataParallel, checked against one process.

Run::

    python -m mbkernels.examples.ddp                 # 2 processes, gloo on CPU
    python -m mbkernels.examples.ddp --world-size 4 --steps 20

(nccl is used instead when there is one CUDA device per process.)

Each rank trains on its own slice of every joint batch. The balancer finds
torch.distributed initialised (``process_group="auto"``), all-reduces its
``[T, T]`` Gram matrix once per step (:mod:`mbkernels.distributed`) and so
computes the same weights on every rank, from the statistics of the joint
batch. DDP averages the parameter gradients. The script then trains one
process on the joint batches and prints how far the parameters are apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import mbkernels as mbk


class MultiTaskNet(nn.Module):
    """Shared bottom -> MultiBalance fork -> one linear tower per task; returns the loss."""

    def __init__(self, num_tasks: int = 3, d_in: int = 8, d: int = 16) -> None:
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(d_in, d), nn.Tanh())
        self.balancer = mbk.MultiBalance(num_tasks, beta=0.9, relax=0.7, reference="mean")
        self.towers = nn.ModuleList(nn.Linear(d, 1) for _ in range(num_tasks))
        self.task_scales = [10.0 ** (t / 2) for t in range(num_tasks)]  # unequal tasks

    def forward(self, x: Tensor, y: Tensor, labelled: Tensor, loss: str = "rank_mean") -> Tensor:
        """``labelled[i, t]``: row i has a label for task t. ``loss="rank_mean"`` averages
        each task over this rank's labelled rows; ``"joint_mean"`` over the joint batch's
        (:func:`mbkernels.joint_mean_losses`), exact when ranks hold different numbers of
        labels."""
        zs = self.balancer(self.bottom(x))
        sums, counts = [], []
        for t, (s, tower, z) in enumerate(zip(self.task_scales, self.towers, zs)):
            sq = s * (tower(z).squeeze(-1) - y[:, t]).pow(2)
            sums.append(torch.where(labelled[:, t], sq, 0.0).sum())
            counts.append(labelled[:, t].sum())
        if loss == "joint_mean":
            losses = mbk.joint_mean_losses(sums, counts)
        else:
            losses = [sm / c.clamp_min(1) for sm, c in zip(sums, counts)]
        return torch.stack(losses).sum()


@dataclass
class Config:
    world_size: int = 2
    steps: int = 5
    batch_per_rank: int = 16
    num_tasks: int = 3
    lr: float = 0.01
    seed: int = 0
    #: Tasks 1.. labelled on only some rows, more of them on rank 0 than on the others.
    partial_labels: bool = False
    #: "rank_mean" (each rank's mean over its labelled rows) or "joint_mean".
    loss: str = "rank_mean"


def joint_batches(cfg: Config) -> list[tuple[Tensor, Tensor, Tensor]]:
    """The joint batches (``world_size * batch_per_rank`` rows each): inputs, targets and
    which rows are labelled for each task. With ``partial_labels``, task 0 is labelled
    everywhere and the others on 75 % of rank 0's rows and 25 % of the other ranks'."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    rows = cfg.world_size * cfg.batch_per_rank
    w = torch.randn(8, cfg.num_tasks, generator=g)
    rate = torch.full((rows, 1), 0.25)
    rate[: cfg.batch_per_rank] = 0.75
    out = []
    for _ in range(cfg.steps):
        x = torch.randn(rows, 8, generator=g)
        y = torch.tanh(x @ w) + 0.1 * torch.randn(rows, cfg.num_tasks, generator=g)
        labelled = torch.ones(rows, cfg.num_tasks, dtype=torch.bool)
        if cfg.partial_labels:
            draw = torch.rand(rows, cfg.num_tasks, generator=g) < rate
            labelled[:, 1:] = draw[:, 1:]
        out.append((x, y, labelled))
    return out


def new_model(cfg: Config) -> MultiTaskNet:
    torch.manual_seed(cfg.seed)
    return MultiTaskNet(cfg.num_tasks)


def train_single(cfg: Config) -> dict[str, Tensor]:
    """One process on the joint batches: the reference."""
    model = new_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    weights = []
    for x, y, labelled in joint_batches(cfg):
        opt.zero_grad()
        model(x, y, labelled).backward()  # one process: both losses are the joint mean
        opt.step()
        weights.append(model.balancer.weights.clone())
    return {"params": _flat(model), "weights": torch.stack(weights)}


#: Optional extra work in each rank after training, before the group is destroyed
#: (a picklable top-level function); its tensors are added to the rank's result.
After = Callable[[int, Config], dict[str, Tensor]]


def _worker(
    rank: int, cfg: Config, init_file: str, out_dir: str, after: After | None = None
) -> None:
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= cfg.world_size
    device = torch.device(f"cuda:{rank}" if use_cuda else "cpu")
    torch.set_num_threads(1)
    dist.init_process_group(
        "nccl" if use_cuda else "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=cfg.world_size,
    )
    try:
        model = new_model(cfg).to(device)
        ddp = DistributedDataParallel(model, device_ids=[rank] if use_cuda else None)
        opt = torch.optim.SGD(ddp.parameters(), lr=cfg.lr)
        lo, hi = rank * cfg.batch_per_rank, (rank + 1) * cfg.batch_per_rank
        weights = []
        for x, y, labelled in joint_batches(cfg):
            opt.zero_grad()
            rows = slice(lo, hi)
            ddp(
                x[rows].to(device), y[rows].to(device), labelled[rows].to(device), cfg.loss
            ).backward()
            opt.step()
            weights.append(model.balancer.weights.detach().cpu().clone())
        result = {"params": _flat(model).cpu(), "weights": torch.stack(weights)}
        if after is not None:
            result.update(after(rank, cfg))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()  # DDP's reducer still holds the group: nothing is freed yet
    # The results are on disk: end the process without running destructors. Freeing the
    # reducer frees gloo's process group, whose destructor joins its worker threads while
    # holding the GIL; a worker still releasing its last work waits for the GIL, and both
    # wait forever (seen in a test run with torch 2.13 and gloo on CPU).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def train_distributed(cfg: Config, after: After | None = None) -> list[dict[str, Tensor]]:
    """Spawn ``world_size`` processes; return each rank's parameters and weights."""
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_worker, args=(cfg, init_file, tmp, after), nprocs=cfg.world_size, join=True)
        return [
            torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(cfg.world_size)
        ]


def _flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--partial-labels",
        action="store_true",
        help="tasks 1.. labelled on some rows only, unevenly across ranks",
    )
    parser.add_argument(
        "--loss",
        choices=("rank_mean", "joint_mean"),
        default="rank_mean",
        help="each rank's mean over its labelled rows, or the joint batch's (exact)",
    )
    args = parser.parse_args(argv)
    cfg = Config(
        world_size=args.world_size,
        steps=args.steps,
        partial_labels=args.partial_labels,
        loss=args.loss,
    )
    ranks = train_distributed(cfg)
    single = train_single(cfg)
    same_weights = all(torch.equal(r["weights"], ranks[0]["weights"]) for r in ranks)
    labels = "partly labelled tasks" if cfg.partial_labels else "fully labelled tasks"
    print(f"ranks: {cfg.world_size}, steps: {cfg.steps}, {labels}, loss: {cfg.loss}")
    print(f"per-rank weights bit-identical: {same_weights}")
    print(f"last weights: {ranks[0]['weights'][-1].tolist()}")
    for r, res in enumerate(ranks):
        diff = (res["params"] - single["params"]).abs().max().item()
        wdiff = (res["weights"] - single["weights"]).abs().max().item()
        print(
            f"rank {r}: max |param - single process| = {diff:.2e}, max |weight diff| = {wdiff:.2e}"
        )


if __name__ == "__main__":
    main()
