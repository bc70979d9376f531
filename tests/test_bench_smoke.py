"""Tiny-size smoke runs of the benchmarks (no timing asserts: speed lives in the
benchmark's own printed ratios, never in unit tests)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from mbkernels.bench import cli, op, timing
from tests.helpers import multibalance_reference


def _finite_positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_interleaved_rotates_order_and_counts_rounds() -> None:
    calls: list[str] = []
    result = timing.interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=0
    )
    # One calibration call each, then rounds starting at a, b, a.
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v.seconds) for k, v in result.items()} == {"a": 3, "b": 3}
    assert all(v.best <= v.median for v in result.values())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rounds": 0}, "rounds"),
        ({"warmup": -1}, "warmup"),
        ({"min_sample_s": -1.0}, "min_sample_s"),
    ],
)
def test_interleaved_rejects_bad_arguments(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        timing.interleaved({"a": lambda: None}, **kwargs)  # type: ignore[arg-type]


def test_naive_step_matches_float64_reference() -> None:
    grads = [torch.randn(300) * 10.0**t for t in range(3)]
    ema = torch.tensor([0.5, 2.0, 40.0])
    out, new_ema = op.naive_step(grads, ema)
    # The reference divides the EMA by 1 - beta**step; step -> inf undoes that.
    ref, ref_ema, _ = multibalance_reference(
        grads, ema, 10**6, beta=op.BETA, relax=op.RELAX, reference="target", target=0
    )
    torch.testing.assert_close(new_ema.double(), ref_ema, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_op_benchmark_tiny() -> None:
    cfg = op.OpConfig(
        "cpu", tasks=(2, 3), log2_sizes=(10, 17), rounds=2, min_sample_s=0.0, compile=False
    )
    cfg.copy_log2 = 16
    res = op.run_op(cfg)
    assert res["benchmark"] == "op"
    assert _finite_positive(res["copy_bandwidth"]["median_Bps"])
    # N = 2^17 spans two CPU chunks: the fused path's chunk boundary is exercised.
    rows = res["rows"]
    assert {(r["num_tasks"], r["log2_n"], r["method"]) for r in rows} == {
        (t, n, m) for t in (2, 3) for n in (10, 17) for m in ("fused", "naive")
    }
    for r in rows:
        assert r["min_bytes"] == (2 * r["num_tasks"] + 1) * r["n"] * 4
        for key in ("median_s", "best_s", "achieved_Bps", "fraction_of_copy", "speedup_vs_naive"):
            assert _finite_positive(r[key]), (key, r)
        assert r["best_s"] <= r["median_s"]
        assert r["speedup_vs_compiled"] is None
        # Fused and naive computed the same combined gradient before being timed.
        assert r["max_rel_diff_vs_naive"] < 1e-5
    assert "fused" in op.format_op(res)


def test_op_config_presets() -> None:
    args = SimpleNamespace(
        tiny=False, quick=True, tasks=None, log2_sizes=[12], rounds=None, no_compile=True
    )
    cfg = op.op_config(args, "cpu")
    assert cfg.tasks == (2, 8) and cfg.log2_sizes == (12,) and not cfg.compile


def test_cli_op_writes_json_and_html(tmp_path, capsys) -> None:
    pytest.importorskip("plotly")
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    rc = cli.main(
        ["op", "--tiny", "--no-compile", "--json", str(out_json), "--html", str(out_html)]
    )
    assert rc == 0
    data = json.loads(out_json.read_text())
    assert data["environment"]["device"] == "cpu"
    assert data["op"]["rows"]
    html = out_html.read_text()
    assert "plotly" in html.lower() and "achieved bandwidth" in html
    assert "vs naive" in capsys.readouterr().out
