"""MultiBalance inside TorchRec: DistributedModelParallel on two gloo ranks equals one
process on the joint batch (examples/torchrec_dlrm.py).

Needs the TorchRec set (``make setup-torchrec``; ``make test`` installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

pytest.importorskip(
    "torchrec",
    reason="TorchRec is not installed: run `make setup-torchrec` (fbgemm-gpu-cpu==1.8.0, "
    "torchrec==1.8.0 without dependencies, then its requirements)",
)

from examples.torchrec_dlrm import Config, compare, run_job, train_single

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

SMALL = Config(nproc=2, steps=4, batch_per_rank=32, num_tasks=3, num_sparse=4, rows_per_table=200)


def _gloo() -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")


def _assert_like_one_process(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    # bit-identical weights on every rank, every step
    assert ranks[0]["weights"].shape == (SMALL.steps, SMALL.num_tasks)
    assert all(torch.equal(r["weights"], ranks[0]["weights"]) for r in ranks)
    # the joint batch's weights (float32 gradients summed in another order: ~1e-7)
    torch.testing.assert_close(ranks[0]["weights"], single["weights"], rtol=1e-5, atol=0)
    diff = compare(ranks, single)
    assert diff["max_dense_diff_vs_single"] < 1e-6, diff
    assert diff["max_table_diff_vs_single"] < 1e-6, diff
    # it did train, and the balancer did not just weigh every task 1
    assert (single["weights"][-1] - 1).abs().max() > 1e-2


@pytest.mark.parametrize("sharding", ["table_wise", "row_wise"])
def test_dmp_on_two_ranks_equals_one_process(sharding: str) -> None:
    _gloo()
    cfg = Config(**{**SMALL.__dict__, "sharding": sharding})
    ranks = run_job(cfg)
    single = train_single(cfg)
    _assert_like_one_process(ranks, single)
    # the tables were sharded as asked: whole tables per rank, or rows split across ranks
    offsets = [o for r in ranks for pieces in r["shards"].values() for o, _ in pieces]
    rows = [p.shape[0] for r in ranks for pieces in r["shards"].values() for _, p in pieces]
    if sharding == "table_wise":
        assert all(o == [0, 0] for o in offsets) and set(rows) == {SMALL.rows_per_table}
        assert all(r["shards"] for r in ranks)  # both ranks hold tables
    else:
        assert {o[0] for o in offsets} == {0, SMALL.rows_per_table // 2}
        assert set(rows) == {SMALL.rows_per_table // 2}
    for t in range(SMALL.num_tasks):
        for name in ("auc", "ne"):
            assert ranks[0]["metrics"][f"task{t}"][name] == ranks[1]["metrics"][f"task{t}"][name]


@pytest.mark.parametrize("sharding", ["table_wise", "row_wise"])
def test_checkpoint_restores_into_a_fresh_dmp_job_and_continues_identically(
    tmp_path: Path, sharding: str
) -> None:
    """k steps, DMP state dict (tables, dense parameters, balancer EMA and step) saved with
    torch.distributed.checkpoint, restored in a new job, m more steps: bit-identical to
    k + m steps in one job."""
    _gloo()
    k, m = 3, 2
    cfg = Config(**{**SMALL.__dict__, "sharding": sharding, "steps": k})
    straight = run_job(Config(**{**cfg.__dict__, "steps": k + m}))
    saved = run_job(cfg, "save", str(tmp_path))
    resumed = run_job(cfg, f"resume:{m}", str(tmp_path))
    assert int(saved[0]["balancer"]["step"]) == k
    for a, b in zip(straight, resumed):
        assert int(b["balancer"]["step"]) == k + m
        assert torch.equal(a["weights"][k:], b["weights"])
        assert torch.equal(a["dense"], b["dense"])
        for key, value in a["balancer"].items():
            assert torch.equal(value, b["balancer"][key]), key
        for name, pieces in a["shards"].items():
            for (oa, pa), (ob, pb) in zip(pieces, b["shards"][name]):
                assert oa == ob and torch.equal(pa, pb), name
    # the restore did something: the saved state is not the initial one
    assert not torch.equal(saved[0]["weights"][-1], torch.ones(SMALL.num_tasks))


@pytest.mark.parametrize("policy", ["skip_task", "skip_update"])
def test_nonfinite_policy_decides_the_same_on_every_rank(policy: str) -> None:
    """On step 1, rank 1 alone gets a NaN in task 2's gradient at Z: the all-reduced Gram
    matrix carries it to both ranks, which take the same decision."""
    _gloo()
    cfg = Config(**{**SMALL.__dict__, "nonfinite": policy, "nan_at": (1, 1, 2)})
    a, b = run_job(cfg)
    assert torch.equal(a["weights"], b["weights"])
    for key in a["balancer"]:
        assert torch.equal(a["balancer"][key], b["balancer"][key]), key
    w = a["weights"]
    if policy == "skip_task":
        assert w[1, 2] == 0 and (w[1, :2] > 0).all() and (w[[0, 2, 3]] > 0).all()
        assert int(a["balancer"]["step"]) == cfg.steps
        assert torch.isfinite(a["dense"]).all() and torch.isfinite(b["dense"]).all()
        assert torch.equal(a["dense"], b["dense"])
    else:
        # the step is refused on both ranks (weights of step 0 kept, step not counted); the
        # NaN flows on into the bottom as in plain training (for an overflow guard to see),
        # so without one every later step is refused too
        assert all(torch.equal(w[s], w[0]) for s in range(1, cfg.steps))
        assert int(a["balancer"]["step"]) == 1
        assert not torch.isfinite(a["dense"]).all()


def test_throughput_benchmark_prints_a_ratio_row(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m benchmarks.torchrec_throughput`` at a tiny size: one row per rank count,
    a positive ratio inside its interval."""
    _gloo()
    from benchmarks.torchrec_throughput import main

    main(["--nproc", "1", "--batch", "32", "--rounds", "3", "--rows", "100", "--embed-dim", "8"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| 1 |")]
    assert len(rows) == 1, rows
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    ratio, (lo, hi) = float(cells[3]), map(float, cells[4].split("-"))
    assert 0 < lo <= ratio <= hi


def test_the_documented_command_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m examples.torchrec_dlrm --nproc 2 --checkpoint DIR`` (few steps): it
    reports bit-identical weights across ranks, the metrics, and the resumed job."""
    _gloo()
    from examples.torchrec_dlrm import main

    main(["--nproc", "2", "--steps", "2", "--batch-per-rank", "32", "--tasks", "2",
          "--checkpoint", str(tmp_path), "--resume-steps", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert "weights_equal_across_ranks: 1" in out
    assert "task1: auc " in out and " ne " in out
    assert "restored from" in out and (tmp_path / "ckpt" / "model").is_dir()
