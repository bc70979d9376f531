"""benchmarks/gpu_check.sh, the prepared GPU check, cannot rot: its dry run (``DRY=1``:
CPU, tiny sizes, the kernels through the Triton interpreter) runs every step with the
arguments the GPU run uses, and its deadline logic skips what no longer fits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import requires_triton

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
BENCH_STEPS = [
    "kernels_float32",
    "kernels_bfloat16",
    "op_key_float32",
    "throughput",
    "throughput_big_batch",
    "op_compile_float32",
    "op_key_bfloat16",
]
STEPS = ["preflight", "device_profile", *BENCH_STEPS[:2], "compiled_tests", *BENCH_STEPS[2:5]]
STEPS += ["launch_count", *BENCH_STEPS[5:]]

pytestmark = pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils")


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    full = {k: v for k, v in os.environ.items() if k != "MBK_TRITON_COMPILED"}
    full.update({"OUT": str(tmp_path), "PYTHON": sys.executable, **env})
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=600
    )
    return proc, time.monotonic() - start


@requires_triton
@pytest.mark.slow
def test_dry_run_runs_every_step_in_order_and_saves_each_result(tmp_path) -> None:
    proc, _ = _run(tmp_path, DRY="1")
    log = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 0, proc.stdout + log[-4000:]
    # At most 8 files come back from a device run: the script writes three.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "results.json", "status.txt"]
    status = (tmp_path / "status.txt").read_text().splitlines()
    assert [line.split()[0] for line in status[:-1]] == STEPS
    assert all(" rc=0 " in line for line in status[:-1]), status
    assert "0 step(s) failed" in status[-1]
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(results) == sorted([*BENCH_STEPS, "launch_count", "device_profile"])
    assert results["device_profile"]["rows"][0]["max_ulp_vs_tensor_rule"] >= 0
    for name in ("kernels_float32", "kernels_bfloat16"):
        op = results[name]["op"]
        assert op["rows"] == [] and op["failures"] == []
        assert {r["kernel"] for r in op["kernel_rows"]} == {"gram", "weighted_sum", "both"}
    for name in ("op_key_float32", "op_compile_float32", "op_key_bfloat16"):
        op = results[name]["op"]
        assert op["rows"] and op["kernel_rows"] == [] and op["failures"] == []
    assert results["op_compile_float32"]["op"]["config"]["compile"]
    assert {r["method"] for r in results["throughput"]["throughput"]["rows"]} == {
        "sum", "multibalance", "multibalance_tensor", "detach", "param_metabalance"
    }  # fmt: skip
    assert {r["what"] for r in results["launch_count"]["rows"]} == {
        "combine", "combine_general", "train_sum", "train_multibalance",
        "train_multibalance_tensor",
    }  # fmt: skip
    assert " passed" in log  # the kernel tests ran (with -o addopts="": no nbval needed)


def test_steps_that_no_longer_fit_before_the_deadline_are_skipped(tmp_path) -> None:
    proc, seconds = _run(tmp_path, DRY="1", DEADLINE_S="20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = (tmp_path / "status.txt").read_text().splitlines()
    assert [line.split()[0] for line in status[:-1]] == STEPS
    assert all("skipped" in line for line in status[:-1])
    assert json.loads((tmp_path / "results.json").read_text()) == {}
    assert seconds < 30
