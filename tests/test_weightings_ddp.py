"""A loss-aware weighting with learned parameters inside a DDP module: the parameters get
their gradients from autograd (through what ``observe`` returns), so DDP all-reduces them
like every other parameter, with ``find_unused_parameters=False`` and ``True`` (the
balancer's forward puts them in the forward graph, where DDP looks for them); the
log-variances stay identical across ranks and equal in both modes."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import mbkernels as mbk

WORLD = 2
STEPS = 3


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bottom = nn.Linear(8, 4)
        self.towers = nn.ModuleList(nn.Linear(4, 1) for _ in range(2))
        self.bal = mbk.Balancer(mbk.make_rule("uw", 2))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [t(z).squeeze(-1) for t, z in zip(self.towers, self.bal(self.bottom(x)))]


def _worker(rank: int, init_file: str, out_dir: str, find_unused: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        model = _Model()
        ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        gen = torch.Generator().manual_seed(rank)
        grads = []
        for _ in range(STEPS):
            x, y = torch.randn(16, 8, generator=gen), torch.randn(16, 2, generator=gen)
            opt.zero_grad()
            losses = [nn.functional.mse_loss(o, y[:, i]) for i, o in enumerate(ddp(x))]
            # the same (all-reduced mean) losses on every rank, as the docs ask
            mean = torch.stack([loss.detach() for loss in losses])
            dist.all_reduce(mean)
            mean /= WORLD
            aux = model.bal.observe(mean)
            (sum(losses) + aux).backward()
            assert model.bal.log_var.grad is not None
            grads.append(model.bal.log_var.grad.clone())
            opt.step()
        torch.save(
            {"log_var": model.bal.log_var.detach().clone(), "grads": torch.stack(grads)},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()
    # The result is on disk: end without destructors (freeing gloo's process group can
    # deadlock on the GIL at exit; see mbkernels/examples/ddp.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.distributed
@pytest.mark.slow
def test_uw_inside_ddp_with_and_without_find_unused_parameters() -> None:
    runs = []
    for find_unused in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            init_file = os.path.join(tmp, "init")
            mp.spawn(_worker, args=(init_file, tmp, find_unused), nprocs=WORLD, join=True)
            ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
        assert torch.equal(ranks[0]["log_var"], ranks[1]["log_var"])
        assert torch.equal(ranks[0]["grads"], ranks[1]["grads"])
        assert float(ranks[0]["log_var"].abs().min()) > 0  # it did train
        runs.append(ranks[0])
    assert torch.equal(runs[0]["log_var"], runs[1]["log_var"])
