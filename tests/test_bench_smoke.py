"""Tiny-size smoke runs of the benchmarks (no timing asserts: speed lives in the
benchmark's own printed ratios, never in unit tests)."""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from benchmarks import cli, op, throughput
from mbviz import dlrm_throughput, memory, naive, timing
from tests.helpers import multibalance_reference

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    """Tiny ops on a shared machine: one thread avoids waiting on busy OpenMP workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    base = timing.Timing("a", (1.0, 10.0, 2.0), 1)
    other = timing.Timing("b", (2.0, 10.0, 1.0), 1)
    assert timing.paired_ratio(base, other) == 1.0  # ratios 0.5, 1, 2
    with pytest.raises(ValueError, match="same interleaved run"):
        timing.paired_ratio(base, timing.Timing("c", (1.0,), 1))


def test_paired_ratio_interval_brackets_the_median_and_narrows_with_rounds() -> None:
    rng = random.Random(1)
    noise = [rng.lognormvariate(0.0, 0.05) for _ in range(200)]
    base = timing.Timing("a", tuple(1.0 * e for e in noise), 1)
    slow = timing.Timing("b", tuple(1.05 * e * rng.lognormvariate(0.0, 0.03) for e in noise), 1)
    lo, hi = timing.paired_ratio_interval(base, slow)
    assert lo <= timing.paired_ratio(base, slow) <= hi
    assert lo < 1 / 1.05 < hi  # the true ratio, for this seed
    short = timing.paired_ratio_interval(
        timing.Timing("a", base.seconds[:20], 1), timing.Timing("b", slow.seconds[:20], 1)
    )
    assert short[1] - short[0] > hi - lo  # ten times fewer rounds: a wider interval
    assert timing.paired_ratio_interval(base, slow) == (lo, hi)  # fixed seed
    # Identical ratios in every round: nothing to be unsure about.
    same = timing.Timing("c", tuple(2.0 * x for x in base.seconds), 1)
    assert timing.paired_ratio_interval(base, same) == pytest.approx((0.5, 0.5))
    assert timing.format_interval((lo, hi)) == f"{lo:.3f}-{hi:.3f}"
    assert timing.format_interval(None) == "-"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"level": 1.0}, "level"), ({"level": 0.0}, "level"), ({"resamples": 0}, "resamples")],
)
def test_paired_ratio_interval_rejects_bad_arguments(kwargs: dict[str, float], name: str) -> None:
    t = timing.Timing("a", (1.0, 2.0), 1)
    with pytest.raises(ValueError, match=name):
        timing.paired_ratio_interval(t, t, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same interleaved run"):
        timing.paired_ratio_interval(t, timing.Timing("c", (1.0,), 1))


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
    out, new_ema = naive.naive_step(grads, ema)
    # The reference divides the EMA by 1 - beta**step; step -> inf undoes that.
    ref, ref_ema, _ = multibalance_reference(
        grads, ema, 10**6, beta=naive.BETA, relax=naive.RELAX, reference="target", target=0
    )
    torch.testing.assert_close(new_ema.double(), ref_ema, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_op_benchmark_tiny() -> None:
    cfg = op.OpConfig(
        "cpu", tasks=(2, 3), log2_sizes=(10, 17), rounds=2, min_sample_s=0.0, compile=False,
        kernels=False,
    )  # fmt: skip
    cfg.copy_log2 = 16
    res = op.run_op(cfg)
    assert res["benchmark"] == "op"
    assert _finite_positive(res["copy_bandwidth"]["median_Bps"])
    # N = 2^17 spans two CPU chunks and eight norm rows: those boundaries are exercised.
    rows = res["rows"]
    assert {(r["num_tasks"], r["log2_n"], r["method"]) for r in rows} == {
        (t, n, m)
        for t in (2, 3)
        for n in (10, 17)
        for m in ("fused", "fused_nocheck", "fused_full", "naive")
    }
    assert res["kernel_rows"] == [] and res["failures"] == []
    for r in rows:
        assert r["min_bytes"] == (2 * r["num_tasks"] + 1) * r["n"] * 4
        keys = ("median_s", "best_s", "achieved_Bps", "copy_Bps", "fraction_of_copy")
        for key in (*keys, "speedup_vs_naive"):
            assert _finite_positive(r[key]), (key, r)
        assert r["best_s"] <= r["median_s"]
        assert r["speedup_vs_compiled"] is None
        # Every method computed the float64 step's combined gradient before being timed.
        assert r["max_rel_diff_vs_float64"] < 1e-5
    assert "fused" in op.format_op(res)
    assert not any(r["method"] == op.COPY for r in rows)  # the ceiling is not a method


def test_op_kernel_rows_and_a_result_beyond_tolerance_fails_the_run(tmp_path, monkeypatch) -> None:
    """Kernel rows run the Triton passes (here through the interpreter) and check them
    against float64; a method outside the dtype's tolerance is a failure, and the command
    line exits 1 after writing its JSON."""
    cfg = op.OpConfig(
        "cpu", dtype="bfloat16", tasks=(3,), log2_sizes=(10,), rounds=1, min_sample_s=0.0,
        compile=False,
    )  # fmt: skip
    cfg.copy_log2 = 12
    res = op.run_op(cfg)
    assert res["failures"] == []
    assert [r["kernel"] for r in res["kernel_rows"]] == ["gram", "weighted_sum", "both"]
    for r in res["kernel_rows"]:
        assert r["max_rel_diff_vs_float64"] < op.TOLERANCE["bfloat16"] and r["median_s"] > 0
        assert r["bytes"] == {"gram": 3, "weighted_sum": 4, "both": 7}[r["kernel"]] * 1024 * 2
    assert "Triton passes alone" in op.format_op(res)
    monkeypatch.setitem(op.TOLERANCE, "float32", 0.0)  # nothing passes a zero tolerance
    out = tmp_path / "op.json"
    argv = ["op", "--tiny", "--no-compile", "--no-kernels", "--tasks", "2", "--json", str(out)]
    assert cli.main(argv) == 1
    failures = json.loads(out.read_text())["op"]["failures"]
    assert any("naive" in f and "vs float64" in f for f in failures)


def test_op_config_presets() -> None:
    args = SimpleNamespace(
        tiny=False, quick=True, tasks=None, log2_sizes=[12], rounds=None, no_compile=True,
        dtype="bfloat16", no_kernels=True,
    )  # fmt: skip
    cfg = op.op_config(args, "cpu")
    assert cfg.tasks == (2, 8) and cfg.log2_sizes == (12,) and not cfg.compile
    assert cfg.dtype == "bfloat16" and not cfg.kernels


# ---------------------------------------------------------------- throughput + memory
def _tiny_throughput(**kw):  # type: ignore[no-untyped-def]
    args = SimpleNamespace(tiny=True, quick=False, tasks=None, batch=None, rounds=None)
    cfg = throughput.throughput_config(args, "cpu")
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_throughput_benchmark_tiny() -> None:
    res = dlrm_throughput.run_throughput(_tiny_throughput())
    assert res["methods"] == [
        "sum",
        "multibalance",
        "fork_only",
        "fork_hold",
        "detach",
        "param_metabalance",
        "param_mgda",
    ]
    rows = {(r["num_tasks"], r["method"]): r for r in res["rows"]}
    assert {t for t, _ in rows} == {2, 3}
    for (_t, name), r in rows.items():
        keys = ("median_s", "best_s", "steps_per_s", "ratio_vs_sum", "ratio_vs_sum_best")
        for key in (*keys, "ratio_vs_sum_paired"):
            assert _finite_positive(r[key]), (key, r)
        lo, hi = r["ratio_vs_sum_paired_90"]
        assert lo <= r["ratio_vs_sum_paired"] <= hi
        # the overhead is the paired per-round difference of the samples, in µs
        base = rows[(_t, "sum")]["samples_s"]
        diffs = sorted(1e6 * (a - b) for a, b in zip(r["samples_s"], base))
        assert r["overhead_us"] == pytest.approx(statistics.median(diffs))
        lo, hi = r["overhead_us_90"]
        assert lo <= r["overhead_us"] <= hi
        assert r["step_us"] == pytest.approx(1e6 * r["median_s"])
        assert r["z_bytes"] == 64 * 16 * 4
        assert r["peak_step_bytes"] > 0
        if name == "sum":
            assert r["ratio_vs_sum"] == 1.0 and r["extra_bytes_vs_sum"] == 0
        if name.startswith("param_"):  # they need the bottom's parameters: no head-only run
            assert r["head_peak_bytes"] is None and r["head_extra_vs_sum_in_z"] is None
    for t in (2, 3):
        # The fork holds all T task gradients of Z at once; the plain sum accumulates them.
        assert rows[(t, "multibalance")]["head_extra_vs_sum_in_z"] >= (t - 1) * 0.5
    assert "multibalance" in dlrm_throughput.format_throughput(res)


@pytest.mark.parametrize("num_tasks", [2, 4])
def test_detach_per_task_gives_the_fork_gradient(num_tasks: int) -> None:
    """Both representation-level methods apply the same rule to the same task gradients
    of Z: every parameter gradient and the weights agree (over two steps)."""
    cfg = _tiny_throughput()
    methods, _ = dlrm_throughput.build_methods(cfg, num_tasks, ["multibalance", "detach"])
    fork, det = methods["multibalance"], methods["detach"]
    for _ in range(2):
        fork.backward()
        det.backward()
        torch.testing.assert_close(
            fork.extra["balancer"].stats.weights, det.extra["balancer"].stats.weights
        )
        for (name, p), q in zip(fork.model.named_parameters(), det.model.parameters()):
            assert p.grad is not None and q.grad is not None, name
            gp = p.grad.to_dense() if p.grad.is_sparse else p.grad
            gq = q.grad.to_dense() if q.grad.is_sparse else q.grad
            torch.testing.assert_close(gp, gq, rtol=1e-5, atol=1e-7, msg=name)
        fork.optimizer.step()
        det.optimizer.step()


def test_fork_only_gives_the_plain_sum_gradient() -> None:
    cfg = _tiny_throughput()
    methods, _ = dlrm_throughput.build_methods(cfg, 3, ["sum", "fork_only"])
    plain, fork = methods["sum"], methods["fork_only"]
    plain.backward()
    fork.backward()
    for (name, p), q in zip(plain.model.named_parameters(), fork.model.parameters()):
        gp = p.grad.to_dense() if p.grad.is_sparse else p.grad
        gq = q.grad.to_dense() if q.grad.is_sparse else q.grad
        torch.testing.assert_close(gp, gq, rtol=1e-5, atol=1e-7, msg=name)


def _shared_grads_and_task_grads(name: str) -> tuple[list[Tensor], list[tuple[Tensor, ...]]]:
    """One backward of method ``name`` (T = 3, tiny model): the shared parameters'
    gradients, and each task's own ``autograd.grad`` of them from a fresh forward."""
    methods, batch = dlrm_throughput.build_methods(_tiny_throughput(), 3, [name])
    m = methods[name]
    m.backward()
    shared = m.model.shared_parameters()
    got = [p.grad.clone() for p in shared]
    z = m.model.representation(batch)
    losses = m.model.task_losses([z] * 3, batch)
    per_task = [torch.autograd.grad(loss, shared, retain_graph=True) for loss in losses]
    return got, per_task


def test_fork_hold_passes_on_task_zeros_gradient_alone() -> None:
    """fork_hold times holding the T gradients; what reaches the bottom is dL_0/dZ."""
    got, per_task = _shared_grads_and_task_grads("fork_hold")
    for g, e in zip(got, per_task[0]):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


def test_sum_method_matches_per_task_autograd() -> None:
    """The baseline really is the plain sum: shared gradient = sum of per-task grads."""
    got, per_task = _shared_grads_and_task_grads("sum")
    for g, *task_grads in zip(got, *per_task):
        torch.testing.assert_close(g, sum(task_grads), rtol=1e-5, atol=1e-7)


def test_param_level_methods_balance_the_shared_parameters() -> None:
    """The parameter-level baselines see T separate backward passes: their stats hold
    the per-task gradient norms of the shared parameters, equal to autograd.grad's."""
    cfg = _tiny_throughput()
    methods, batch = dlrm_throughput.build_methods(cfg, 3, ["param_metabalance", "param_mgda"])
    for m in methods.values():
        m.backward()
        shared = m.model.shared_parameters()
        z = m.model.representation(batch)
        losses = m.model.task_losses([z] * 3, batch)
        norms = [
            torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)]
            ).norm()
            for loss in losses
        ]
        stats = m.extra["balancer"].stats
        torch.testing.assert_close(stats.norms.float(), torch.stack(norms), rtol=1e-4, atol=1e-7)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in shared)


def test_build_methods_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="methods must be among"):
        dlrm_throughput.build_methods(_tiny_throughput(), 2, ["sum", "nope"])


def test_storage_tracker_counts_peak_of_live_tensors() -> None:
    def step() -> None:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 live
        del a
        c = b + 1  # a freed: 8000 live again
        del b, c

    assert memory.peak_step_bytes(step, "cpu") == 8000


def test_cli_methods_selects_throughput_methods_with_the_baseline_first(tmp_path) -> None:
    out = tmp_path / "r.json"
    argv = ["throughput", "--tiny", "--tasks", "2", "--json", str(out)]
    assert cli.main([*argv, "--methods", "fork_hold", "multibalance", "fork_hold"]) == 0
    data = json.loads(out.read_text())["throughput"]
    assert data["methods"] == ["sum", "fork_hold", "multibalance"]
    assert {r["method"] for r in data["rows"]} == {"sum", "fork_hold", "multibalance"}
    with pytest.raises(ValueError, match=r"--methods must be among .*'multibalance'.*'nope'"):
        cli.main([*argv, "--methods", "nope"])


def test_cli_all_tiny_writes_json_html_markdown(tmp_path, capsys) -> None:
    pytest.importorskip("plotly")
    out = {ext: tmp_path / f"r.{ext}" for ext in ("json", "html", "md")}
    files = ["--json", str(out["json"]), "--html", str(out["html"]), "--markdown", str(out["md"])]
    assert cli.main(["all", "--tiny", "--no-compile", "--no-kernels", *files]) == 0
    data = json.loads(out["json"].read_text())
    assert data["environment"]["device"] == "cpu"
    assert data["op"]["rows"] and data["throughput"]["rows"]
    html = out["html"].read_text()
    assert "Training throughput" in html and "achieved bandwidth" in html
    assert "copy (same rounds)" in html
    printed = capsys.readouterr().out
    assert "vs naive" in printed and "multibalance" in printed
    md = out["md"].read_text()
    assert md.count("| 2 | 2^10 |") == 4 and "one large copy measured once" in md
    assert "| 3 | detach |" in md


def test_malloc_tuning_is_reported_and_validated() -> None:
    """glibc tuning runs in a child process (it changes the allocator of the process)."""
    from benchmarks import malloc

    with pytest.raises(ValueError, match=r"threshold must be an integer in \[65536, 33554432\]"):
        malloc.tune_glibc(1 << 40)
    assert isinstance(malloc.describe()["allocator"], str)
    code = (
        "from benchmarks import malloc; ok = malloc.tune_glibc(); d = malloc.describe(); "
        "assert (not ok) or (d['mmap_threshold'] == d['trim_threshold'] == 32 << 20), d; "
        "print(ok, d['allocator'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=ROOT,
    ).stdout
    tuned, allocator = out.split(" ", 1)
    if tuned == "True":
        assert allocator.startswith("glibc") and "mallopt" in allocator


def test_paired_difference_is_the_median_of_per_round_differences() -> None:
    base = timing.Timing("a", (1.0, 10.0, 2.0), 1)
    other = timing.Timing("b", (2.0, 10.5, 2.25), 1)
    assert timing.paired_difference(base, other) == 0.5  # differences 1, 0.5, 0.25
    lo, hi = timing.paired_difference_interval(base, other)
    assert 0.25 <= lo <= 0.5 <= hi <= 1.0
    with pytest.raises(ValueError, match="same interleaved run"):
        timing.paired_difference(base, timing.Timing("c", (1.0,), 1))


def test_small_model_rows_report_ratio_overhead_and_breakdown(tmp_path, capsys) -> None:
    out = tmp_path / "small.json"
    argv = ["throughput", "--model", "tabular", "--tiny", "--tasks", "2", "--json", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())["throughput_small"]
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {
        "sum",
        "multibalance",
        "multibalance_tensor",
        "equal_fork",
        "fork_sum",
        "fork_hold",
    }
    for r in rows.values():
        assert r["model"] == "tabular" and r["num_tasks"] == 2 and r["z_shape"] == [256, 32]
        lo, hi = r["ratio_vs_sum_paired_90"]
        assert lo <= r["ratio_vs_sum_paired"] <= hi
        lo, hi = r["overhead_us_90"]
        assert lo <= r["overhead_us"] <= hi
    pieces = rows["multibalance"]["breakdown_us"]
    assert {"pass1", "rule", "pass2", "statistics", "plumbing", "combine"} <= set(pieces)
    assert all(pieces[p] > 0 for p in ("pass1", "rule", "pass2", "combine"))
    assert "plumbing" in capsys.readouterr().out
    from benchmarks import report

    table = report.markdown({"throughput_small": result})
    assert "| tabular | 2 | multibalance |" in table and "plumbing" in table
    # the timing wrappers are gone afterwards
    from mbkernels import balancer, numerics, ops

    assert balancer.range_safe_sq_norms is numerics.range_safe_sq_norms
    assert ops.weighted_sum.__module__ == "mbkernels.ops"


def test_small_models_run_on_cpu_only() -> None:
    with pytest.raises(ValueError, match="cpu only"):
        cli.main(["throughput", "--model", "tabular", "--tiny", "--device", "cuda"])
