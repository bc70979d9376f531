"""Training throughput in TorchRec: MultiBalance against the plain sum of the losses.

Run from the repository root (needs ``make setup-torchrec``)::

    python -m benchmarks.torchrec_throughput                  # 1 process and 2 ranks
    python -m benchmarks.torchrec_throughput --nproc 2 --batch 4096 --rounds 20

Each configuration spawns ``nproc`` ranks (gloo on CPU, one torch thread each); every rank
builds two DistributedModelParallel copies of the same Criteo-like multi-task DLRM
(:mod:`examples.torchrec_model`: 26 sparse features through a sharded
EmbeddingBagCollection, DLRM interaction, shared MLP 512-256, T towers), one with
MultiBalance on Z and one summing the losses, and times full training steps (forward,
backward with the fused embedding optimizer, dense SGD step) of both, interleaved round by
round (:func:`mbviz.timing.interleaved`), with glibc's allocator tuned as in
``python -m benchmarks throughput`` (``--malloc default`` keeps glibc's settings).
Reported: median step time of each and the paired ratio of MultiBalance's steps/s to the
plain sum's (median over rounds of sum time / MultiBalance time; < 1: MultiBalance is
slower) with a 90 % bootstrap interval, from rank 0's clock (the collectives keep the
ranks in step).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from examples.torchrec_data import synthetic_batches, synthetic_config
from examples.torchrec_dlrm import Config, new_model
from examples.torchrec_sharding import dense_optimizer, shard
from mbviz.timing import interleaved, paired_ratio, paired_ratio_interval

from .malloc import tune_glibc

SIZES = {"bottom": (256,), "shared": (512, 256), "tower": (64,)}


def _worker(rank: int, args: argparse.Namespace, nproc: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    if args.malloc == "tuned":
        tune_glibc()
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=nproc)
    try:
        cfg = Config(nproc=nproc, batch_per_rank=args.batch, num_tasks=args.tasks)
        mcfg = synthetic_config(args.tasks, 26, args.rows, embed_dim=args.embed_dim, **SIZES)
        joint = next(synthetic_batches(mcfg, nproc * args.batch, 1, seed=0))
        batch = joint.rows(rank * args.batch, (rank + 1) * args.batch)
        steps = {}
        for name, balance in (("sum", False), ("multibalance", True)):
            c = Config(**{**cfg.__dict__, "balance": balance})
            model = new_model(c, mcfg)
            dmp = shard(model, c.sharding, c.table_lr, torch.device("cpu"))
            opt = dense_optimizer(dmp, c.lr, c.momentum)

            def step(dmp=dmp, opt=opt) -> None:
                opt.zero_grad()
                dmp(batch)[0].backward()
                opt.step()

            steps[name] = step
        t = interleaved(steps, rounds=args.rounds, warmup=2)
        if rank == 0:
            torch.save({n: list(v.seconds) for n, v in t.items()}, Path(out) / "t.pt")
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run(args: argparse.Namespace, nproc: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(
            _worker, args=(args, nproc, os.path.join(tmp, "init"), tmp), nprocs=nproc, join=True
        )
        return torch.load(Path(tmp) / "t.pt")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=2048, help="rows per rank")
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--rows", type=int, default=10_000, help="rows per embedding table")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument(
        "--malloc",
        choices=["tuned", "default"],
        default="tuned",
        help="glibc keeps freed blocks up to 32 MiB in each rank (benchmarks.malloc), as in "
        "python -m benchmarks throughput; 'default' keeps glibc's settings",
    )
    args = p.parse_args(argv)
    from mbviz.timing import Timing

    print(
        f"TorchRec DMP (gloo, CPU, 1 thread per rank), T = {args.tasks}, "
        f"{args.batch} rows per rank, {args.rounds} interleaved rounds, malloc {args.malloc}"
    )
    print("| ranks | sum ms/step | MultiBalance ms/step | MB steps/s vs sum | 90 % interval |")
    print("|---|---|---|---|---|")
    for nproc in args.nproc:
        s = run(args, nproc)
        base = Timing("sum", tuple(s["sum"]), 1)
        mb = Timing("multibalance", tuple(s["multibalance"]), 1)
        lo, hi = paired_ratio_interval(base, mb)
        print(
            f"| {nproc} | {1e3 * base.median:.1f} | {1e3 * mb.median:.1f} | "
            f"{paired_ratio(base, mb):.3f} | {lo:.3f}-{hi:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
