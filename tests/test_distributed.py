"""Two gloo processes with DDP equal one process on the joint batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import mbkernels as mbk
from mbkernels.examples.ddp import Config, train_distributed, train_single


@pytest.mark.distributed
@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_on_the_joint_batch() -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    cfg = Config(world_size=2, steps=4, batch_per_rank=16)
    ranks = train_distributed(cfg)
    single = train_single(cfg)
    # Every rank applied bit-identical weights on every step...
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    assert ranks[0]["weights"].shape == (cfg.steps, cfg.num_tasks)
    # ...the weights of the joint batch (local Gram matrices would give other weights)...
    torch.testing.assert_close(ranks[0]["weights"], single["weights"], rtol=1e-6, atol=0)
    # ...and the parameters follow the single-process run.
    for res in ranks:
        torch.testing.assert_close(res["params"], single["params"], rtol=0, atol=1e-6)
    assert not torch.equal(single["params"], _initial_params(cfg))  # it did train


def _initial_params(cfg: Config) -> torch.Tensor:
    from mbkernels.examples.ddp import new_model

    return torch.cat([p.detach().flatten() for p in new_model(cfg).parameters()])


def test_process_group_argument_is_validated() -> None:
    with pytest.raises(ValueError, match="process_group must be 'auto', None, False or"):
        mbk.MultiBalance(2, process_group="world")


def test_process_group_none_never_reduces() -> None:
    bal = mbk.MultiBalance(2, process_group=None)
    z = torch.randn(3, 2, requires_grad=True)
    a, b = bal(z)
    (a.sum() + b.sum()).backward()  # None: never reduces
    assert int(bal.step) == 1
