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
    ranks = train_distributed(cfg, after=_nonfinite_on_one_rank)
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
    # Non-finite gradient on rank 1 only: both ranks take the same decision (global Gram).
    a, b = ranks[0]["nf_weights"], ranks[1]["nf_weights"]
    assert torch.equal(a, b) and torch.equal(ranks[0]["nf_ema"], ranks[1]["nf_ema"])
    assert a[1, 1] == 0 and (a[[0, 2]] > 0).all() and (a[1, [0, 2]] > 0).all()
    assert ranks[0]["nf_ema"][1, 1] == ranks[0]["nf_ema"][0, 1]  # task 1's EMA held
    assert torch.equal(ranks[0]["nf_steps"], torch.tensor([1, 2, 3]))
    assert torch.isfinite(ranks[0]["nf_grads"]).all() and torch.isfinite(ranks[1]["nf_grads"]).all()


@pytest.mark.distributed
@pytest.mark.slow
def test_partly_labelled_tasks_need_the_joint_mean() -> None:
    """Tasks labelled on 75 % of rank 0's rows and 25 % of rank 1's: per-rank means weight
    rank 1's few labels three times as much as the joint batch does, so the run departs from
    one process; joint_mean_losses makes it exact again."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    diffs = {}
    for loss in ("rank_mean", "joint_mean"):
        cfg = Config(world_size=2, steps=4, batch_per_rank=16, partial_labels=True, loss=loss)
        ranks, single = train_distributed(cfg), train_single(cfg)
        assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
        diffs[loss] = (
            float((ranks[0]["params"] - single["params"]).abs().max()),
            float((ranks[0]["weights"] - single["weights"]).abs().max()),
        )
    assert diffs["joint_mean"][0] < 1e-6 and diffs["joint_mean"][1] < 1e-5, diffs
    assert diffs["rank_mean"][0] > 1e-3 and diffs["rank_mean"][1] > 1e-2, diffs


def test_joint_mean_losses_in_one_process() -> None:
    sums = [torch.tensor(6.0), torch.tensor(0.0), torch.tensor(5.0, dtype=torch.float64)]
    out = mbk.joint_mean_losses(sums, [3, 0, torch.tensor(2)])
    assert [float(o) for o in out] == [2.0, 0.0, 2.5]  # plain means; no label: its zero sum
    assert out[2].dtype == torch.float64
    with pytest.raises(ValueError, match="same length"):
        mbk.joint_mean_losses(sums, [1, 2])
    with pytest.raises(ValueError, match="counts must be finite numbers >= 0"):
        mbk.joint_mean_losses(sums, [1, -1, 2])
    with pytest.raises(ValueError, match="0-d tensors"):
        mbk.joint_mean_losses([torch.ones(2)], [1])


def _nonfinite_on_one_rank(rank: int, cfg: Config) -> dict[str, torch.Tensor]:
    """In the spawned ranks: a balancer on its own group, ``nonfinite="skip_task"``; on
    step 2, task 1's gradient is NaN on rank 1 only."""
    group = dist.new_group()
    bal = mbk.MultiBalance(3, nonfinite="skip_task", process_group=group)
    gen = torch.Generator().manual_seed(100 + rank)
    weights, emas, steps, grads = [], [], [], []
    for step in range(3):
        z = torch.zeros(4, 5, requires_grad=True)
        g = [torch.randn(4, 5, generator=gen) * 10.0**t for t in range(3)]
        if step == 1 and rank == 1:
            g[1][0, 0] = float("nan")
        sum((o * gt).sum() for o, gt in zip(bal(z), g)).backward()
        weights.append(bal.weights.clone())
        emas.append(bal.ema.clone())
        steps.append(int(bal.step))
        grads.append(z.grad)
    return {
        "nf_weights": torch.stack(weights),
        "nf_ema": torch.stack(emas),
        "nf_steps": torch.tensor(steps),
        "nf_grads": torch.stack(grads),
    }


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
