"""The Triton kernels compile for real GPUs (A100 sm_80, H100/H200 sm_90), keep their
working set in registers and read aligned gradients with vector loads, checked on a
machine without a GPU.

``tools/triton_resources.py`` compiles each kernel with the package's own launch sizes
through Triton's NVIDIA backend and reads the SASS back: spill stores (``STL``) and the
width of every global load. It runs in a subprocess because this test session has
``TRITON_INTERPRET=1`` set (the interpreter replaces the compiler). A negative control
checks that the count does find spills: pass 1 at 33 tasks with the 128-element blocks it
used before spilled 1,500 values on sm_80.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import requires_triton

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "triton_resources.py"

pytestmark = [requires_triton, pytest.mark.slow]


def _compiler_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _nvidia_backend() -> bool:
    import triton

    return (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump").exists()


needs_backend = pytest.mark.skipif(
    not _nvidia_backend(), reason="Triton's NVIDIA backend tools (ptxas, cuobjdump) missing"
)


@needs_backend
def test_kernels_compile_for_a100_and_h100_in_registers_with_vector_loads(tmp_path) -> None:
    out = tmp_path / "resources.json"
    argv = ["--tasks", "8", "17", "33", "--dtypes", "float32", "float16"]
    proc = subprocess.run(
        [sys.executable, str(TOOL), *argv, "--json", str(out)],
        capture_output=True, text=True, env=_compiler_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3 * 2 * 2 * 2 * 3  # variants x kernels x archs x dtypes x tasks
    for r in rows:
        assert 0 < r["registers"] <= 255, r
        if r["tasks"] <= 32:
            assert r["spill_stores"] == 0, r
        else:  # T_PAD = 64: a few stores at most (the old sizes: about 1,500)
            assert r["spill_stores"] <= 8, r
        widths = {int(bits): n for bits, n in r["global_load_bits"].items()}
        if r["variant"] == "vector":  # the gradients arrive in 8- or 16-byte vectors
            assert 16 not in widths, r
            if r["kernel"] == "gram" or r["tasks"] <= 16:  # pass 2: 1024-element blocks
                assert 128 in widths, r
        elif r["dtype"] == "float16" and r["kernel"] == "weighted_sum":
            assert 16 in widths, r  # the other variants do read element by element
    warps = {(r["tasks"], r["num_warps"]) for r in rows if r["kernel"] == "gram"}
    assert warps == {(8, 4), (17, 8), (33, 8)}


@needs_backend
def test_spill_count_finds_spills() -> None:
    code = (
        "import sys\n"
        "from mbkernels.ops import triton_ops\n"
        "triton_ops.gram_launch = lambda t: (64, 128, 4)\n"
        "sys.path.insert(0, 'tools')\n"
        "import triton_resources as tr\n"
        "print(tr.resources('gram', 33, 'float32', 80)['spill_stores'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, env=_compiler_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) > 100


def test_launch_sizes_stay_in_the_register_budget() -> None:
    from mbkernels.ops.triton_ops import gram_launch, weighted_sum_launch

    for vector_loads, budget in ((True, 16384), (False, 4096)):
        previous = 1024
        for t in range(1, 300):
            block, warps = weighted_sum_launch(t, vector_loads)
            assert block & (block - 1) == 0 and 128 <= block <= previous and warps == 4
            assert block * t <= budget or block == 128
            assert block * t > budget // 2 or block == 1024  # no smaller than needed
            previous = block
    for t in range(1, 300):
        t_pad, block, warps = gram_launch(t)
        assert t_pad >= max(16, t) and t_pad & (t_pad - 1) == 0
        assert block & (block - 1) == 0 and warps in (4, 8)
    assert gram_launch(16) == (16, 256, 4) and gram_launch(128) == (128, 32, 8)
