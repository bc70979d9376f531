"""The Triton kernels compile for real GPUs (A100 sm_80, H100/H200 sm_90), keep their
working set in registers and read aligned gradients with vector loads, checked on a
machine without a GPU.

``tools/triton_resources.py`` compiles each kernel with the package's own launch sizes
through Triton's NVIDIA backend and reads the SASS back: spill stores (``STL``) and the
width of every global load. It runs in a subprocess because this test session has
``TRITON_INTERPRET=1`` set (the interpreter replaces the compiler). A negative control
checks that the count does find spills: pass 1 at 33 tasks with 128-element blocks spills
about 1,500 values on sm_80.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mbkernels.ops.triton_ops import OUTER_MAX_TASKS, OUTER_PROGRAMS_PER_SM

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
        else:  # T_PAD = 64: a few stores at most (128-element blocks: about 1,500)
            assert r["spill_stores"] <= 8, r
        widths = {int(bits): n for bits, n in r["global_load_bits"].items()}
        if r["kernel"] == "gram" and r["tasks"] <= OUTER_MAX_TASKS:
            # the outer-product kernel reads one element per thread and task, by design
            assert widths.get(32 if r["dtype"] == "float32" else 16), r
            assert r["instructions_per_column"] <= 4, r
        elif r["variant"] == "vector":  # the gradients arrive in 8- or 16-byte vectors
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


@needs_backend
def test_the_range_checks_float64_launches_compile_for_a100_and_h100(tmp_path) -> None:
    """The two launches that make the device path's range check sync-free: the float64
    pass 1 (no spills at 3-33 tasks) and the rule step predicated on the range flag."""
    out = tmp_path / "resources.json"
    argv = ["--kernels", "gram_float64", "--tasks", "3", "8", "33", "--variants", "vector"]
    proc = subprocess.run(
        [sys.executable, str(TOOL), *argv, "--dtypes", "float32", "bfloat16", "--json", str(out)],
        capture_output=True, text=True, env=_compiler_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3 * 2 * 2 and all(r["spill_stores"] == 0 for r in rows), rows
    code = (
        "import sys\n"
        "sys.path.insert(0, 'tools')\n"
        "import triton_resources as tr\n"
        "for arch in (80, 90):\n"
        "    for t in (3, 8):\n"
        "        for predicated in (False, True):\n"
        "            tr.compile_rule_step(t, arch, predicated)\n"
        "print('compiled')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, env=_compiler_env(), cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "compiled", proc.stderr


def test_launch_sizes_stay_in_the_register_budget() -> None:
    from mbkernels.ops.triton_ops import gram_launch, weighted_sum_launch

    for vector_loads, budget in ((True, 16384), (False, 2048)):
        previous = 1024
        for t in range(1, 300):
            block, warps = weighted_sum_launch(t, vector_loads)
            assert block & (block - 1) == 0 and 128 <= block <= previous and warps == 4
            assert block * t <= budget or block == 128
            assert block * t > budget // 2 or block == 1024  # no smaller than needed
            previous = block
    for t in range(1, 300):
        t_pad, block, warps = gram_launch(t)
        assert t_pad >= (t if t <= OUTER_MAX_TASKS else max(16, t)) and t_pad & (t_pad - 1) == 0
        assert block & (block - 1) == 0 and warps in (4, 8)
        if t <= OUTER_MAX_TASKS:  # one column per thread
            assert block == 32 * warps
    assert gram_launch(8) == (8, 128, 4) and gram_launch(9) == (16, 256, 4)
    assert gram_launch(16) == (16, 256, 4) and gram_launch(128) == (128, 32, 8)


#: Where a second Triton (the GPU image's 3.6.0) is installed: its site-packages directory
#: is put ahead of ours on PYTHONPATH (a venv made with ``python3 -m venv /work/venv-triton36
#: && /work/venv-triton36/bin/pip install triton==3.6.0``, same Python version).
OTHER_TRITON = os.environ.get(
    "MBK_OTHER_TRITON",
    str(Path("/work/venv-triton36/lib") / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        / "site-packages"),
)  # fmt: skip


def _tritons() -> list[str]:
    found = (Path(OTHER_TRITON) / "triton" / "backends" / "nvidia" / "bin").is_dir()
    return ["ours", OTHER_TRITON] if found else ["ours"]


@needs_backend
@pytest.mark.parametrize("triton_site", _tritons())
def test_gram_pass_issues_few_instructions_per_column(tmp_path, triton_site: str) -> None:
    """Pass 1 at 4 and 8 tasks is bound by memory, not by instruction issue: its hot loop
    issues at most 2 (T = 4) or 4 (T = 8) warp-instructions per gradient column (the
    padded tl.dot issued ~11.7), spills nothing, on sm_80 and sm_90 in every dtype, with
    our Triton and with the GPU image's (3.6.0) where it is installed."""
    out = tmp_path / "gram.json"
    env = _compiler_env()
    if triton_site != "ours":
        env["PYTHONPATH"] = os.pathsep.join([triton_site, env["PYTHONPATH"]])
    # The kernel takes no alignment flag; "aligned-odd" also covers a length not divisible
    # by 16 (the compiler sees n's divisibility).
    argv = ["--kernels", "gram", "--tasks", "2", "4", "8", "--variants", "aligned-odd"]
    proc = subprocess.run(
        [sys.executable, str(TOOL), *argv, "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    if triton_site != "ours":
        assert result["triton"].startswith("3.6"), result["triton"]
    rows = result["rows"]
    assert len(rows) == 2 * 3 * 3  # archs x dtypes x tasks
    for r in rows:
        assert r["spill_stores"] == 0, r
        assert r["instructions_per_column"] <= (2 if r["tasks"] <= 4 else 4), r
        # T^2 products per column, two blocks a pass (ptxas may unroll the loop further)
        assert r["loop_ffma"] % (2 * r["tasks"] ** 2) == 0, r
        # The launch's programs per SM are all resident at once: 64K registers, 64 warps.
        per_thread = -(-r["registers"] // 8) * 8
        resident = min(64 // r["num_warps"], 65536 // (per_thread * 32 * r["num_warps"]))
        assert OUTER_PROGRAMS_PER_SM[r["tasks"]] <= resident, r


def test_loop_cost_reads_the_hot_loop_of_sass_text() -> None:
    """The per-column count of a hand-written loop of 6 instructions: the loads that read
    (one LDG.128, one LDGSTS.128; the `!PT` one reads nothing) bring 8 float32 elements
    per thread, 4 columns of 2 tasks, so one pass covers 32 * 4 columns per warp."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import triton_resources as tr
    finally:
        sys.path.remove(str(ROOT / "tools"))
    sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   LDG.E.64 R2, desc[UR4][R4.64] ;
        /*0020*/                   LDG.E.128 R8, desc[UR4][R2.64] ;
        /*0030*/                   LDGSTS.E.BYPASS.128 [R3], desc[UR4][R6.64], P0 ;
        /*0040*/                   LDGSTS.E.BYPASS.128 [R3+0x10], desc[UR4][R6.64], !PT ;
        /*0050*/                   FFMA R12, R8, R8, R12 ;
        /*0060*/                   LDGDEPBAR ;
        /*0070*/               @P0 BRA 0x20 ;
        /*0080*/                   EXIT ;
    """
    assert len(tr.hot_loop(sass)) == 6
    assert tr.load_widths(sass) == {64: 1, 128: 3}  # LDGDEPBAR is not a load
    cost = tr.loop_cost(sass, 2, 32)
    assert cost["loop_instructions"] == 6 and cost["loop_ffma"] == 1
    assert cost["instructions_per_column"] == pytest.approx(6 / 128, abs=1e-3)
