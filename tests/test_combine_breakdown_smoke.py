"""Tiny run of ``python -m benchmarks.combine_breakdown`` (no timing asserts)."""

from __future__ import annotations

import json

import pytest

from benchmarks import combine_breakdown as module


def test_breakdown_times_every_piece_and_restores_the_balancer(tmp_path, capsys) -> None:
    out = tmp_path / "breakdown.json"
    argv = ["--tiny", "--tasks", "2", "3", "--steps", "3", "--warmup", "1", "--json", str(out)]
    module.main(argv)
    report = json.loads(out.read_text())
    assert set(report) == {"2", "3"}
    for r in report.values():
        assert r["step_us"] > 0
        for where in ("in_step_us", "hot_us"):
            assert set(r[where]) == {*module.PIECES, "statistics"}
            assert all(r[where][p] > 0 for p in module.PIECES)
        # the pieces are parts of _combine, which is part of the step
        parts = r["in_step_us"]
        assert parts["pass1"] + parts["rule"] + parts["pass2"] <= parts["combine"] * 1.5
        assert parts["combine"] < r["step_us"]
    assert "combine" in capsys.readouterr().out
    # the timing wrappers are gone afterwards
    from mbkernels import balancer, numerics, ops

    assert balancer.range_safe_sq_norms is numerics.range_safe_sq_norms
    assert ops.weighted_sum.__module__ == "mbkernels.ops"


def test_breakdown_rejects_bad_arguments() -> None:
    for argv in (["--tasks", "0"], ["--steps", "0"], ["--threads", "0"], ["--batch", "0"]):
        with pytest.raises(SystemExit) as err:
            module.main(argv)
        assert err.value.code == 2
