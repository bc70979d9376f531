"""Compile the Triton kernels for real GPUs, on any machine, and report their resources.

No GPU is needed: Triton's NVIDIA backend compiles to a cubin for a named target
(``sm_80`` = A100, ``sm_90`` = H100/H200) with the ``ptxas`` it ships, and its
``cuobjdump`` reads back the registers per thread and the SASS. For each kernel,
dtype and task count, with the launch sizes the package itself uses
(``gram_launch``, ``weighted_sum_launch``), it prints registers per thread,
shared memory, the number of local-memory stores (``STL``: register spills) and
the widths of the global loads (``LDG``, and ``LDGSTS``: cp.async), for the
three ways Triton's JIT specialises a launch (``VARIANTS``): gradients on 16-byte
boundaries (fresh allocations) of a length divisible by 16 (vector loads), the
same of another length, and gradients off a 16-byte boundary (views).

    python tools/triton_resources.py                    # the default grid, a table
    python tools/triton_resources.py --check --json r.json   # exit 1 if anything spills

Run it without ``TRITON_INTERPRET`` (the interpreter replaces the compiler).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, said aloud

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from mbkernels.ops import triton_ops

DTYPES = {
    "float32": ("fp32", tl.float32),
    "float16": ("fp16", tl.float16),
    "bfloat16": ("bf16", tl.bfloat16),
}
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
#: One task count per launch size of either kernel (see ``triton_ops``).
DEFAULT_TASKS = (3, 8, 12, 17, 33, 100)


#: Triton's JIT marks pointer and integer arguments divisible by 16 when they are, which
#: is what lets masked loads and stores be vectorised. The launch variants:
#: ``{name: (ALIGNED flag, whether the length n is divisible by 16)}``.
VARIANTS = {"vector": (True, True), "aligned-odd": (True, False), "unaligned": (False, False)}
_DIVISIBLE = [["tt.divisibility", 16]]


def _compile(kernel: str, t: int, dtype: str, arch: int, variant: str = "vector") -> Any:
    short, tl_dtype = DTYPES[dtype]
    aligned, n_divisible = VARIANTS[variant]
    # pointer arguments: fresh allocations (16-byte aligned); n: int32 (n < 2^31)
    if kernel == "gram":
        t_pad, block, num_warps = triton_ops.gram_launch(t)
        outer = t <= triton_ops.OUTER_MAX_TASKS
        fn = triton_ops.KERNELS["gram_outer" if outer else "gram"]
        signature = {"table_ptr": "*i64", "partial_ptr": "*fp32", "n_elements": "i32",
                     "blocks_per_program": "i32"}  # fmt: skip
        constexprs = {"T": t, "T_PAD": t_pad, "BLOCK": block, "DTYPE": tl_dtype}
        pointers, n_index = (0, 1), 2
    elif kernel == "gram_float64":  # the range check's float64 pass 1 (no ALIGNED hint)
        t_pad, block, num_warps = triton_ops.gram_float64_launch(t)
        fn = triton_ops.KERNELS["gram_float64"]
        signature = {"table_ptr": "*i64", "flag_ptr": "*fp64", "partial_ptr": "*fp64",
                     "n_elements": "i32", "blocks_per_program": "i32"}  # fmt: skip
        constexprs = {"T": t, "T_PAD": t_pad, "BLOCK": block, "DTYPE": tl_dtype}
        pointers, n_index = (0, 1, 2), 3
    else:
        block, num_warps = triton_ops.weighted_sum_launch(t, aligned and n_divisible)
        fn = triton_ops.KERNELS["weighted_sum"]
        signature = {"table_ptr": "*i64", "weight_ptr": "*fp32", "out_ptr": f"*{short}",
                     "n_elements": "i32"}  # fmt: skip
        constexprs = {"T": t, "BLOCK": block, "DTYPE": tl_dtype}
        pointers, n_index = (0, 1, 2), 3
    attrs = {(i,): _DIVISIBLE for i in pointers}
    if n_divisible:
        attrs[(n_index,)] = _DIVISIBLE
    if kernel != "gram_float64" and fn is not triton_ops.KERNELS["gram_outer"]:
        # (the outer-product kernel reads element by element anyway)
        constexprs["ALIGNED"] = aligned
    signature.update(dict.fromkeys(constexprs, "constexpr"))
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})


def compile_rule_step(t: int, arch: int, predicated: bool) -> Any:
    """Compile the device path's rule program (``triton_rule._multibalance_step_kernel``)
    for ``t`` tasks, as the balancer launches it: its float32 partials first, or
    ``predicated`` on the range flag, reading float64 partials."""
    from mbkernels.ops import triton_rule

    pointers = ["gram_ptr", "scale_ptr", "params_ptr", "ema_ptr", "count_ptr", "step_ptr",
                "weights_ptr", "streak_ptr", "record_ptr", "flag_ptr"]  # fmt: skip
    types = {"gram_ptr": "*fp64" if predicated else "*fp32", "scale_ptr": "*fp32",
             "ema_ptr": "*fp32", "count_ptr": "*i64", "step_ptr": "*i64",
             "streak_ptr": "*i64"}  # fmt: skip
    signature = {name: types.get(name, "*fp64") for name in pointers}
    signature.update(dict.fromkeys(["num_parts", "part_stride", "row_stride", "numel"], "i32"))
    constexprs = {"T": t, "T_PAD": triton.next_power_of_2(t), "REFERENCE": 0, "TARGET": 0,
                  "BIAS_CORRECTION": True, "HAS_SCALE": False, "LIBDEVICE": True,
                  "PREDICATED": predicated}  # fmt: skip
    signature.update(dict.fromkeys(constexprs, "constexpr"))
    src = ASTSource(fn=triton_rule.KERNELS["multibalance_step"], signature=signature,
                    constexprs=constexprs)  # fmt: skip
    options = {"num_warps": 4, "enable_fp_fusion": False}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def load_widths(sass: str) -> dict[int, int]:
    """``{bits: count}`` of the global loads (``LDG``, ``LDGSTS``) in SASS text."""
    widths: dict[int, int] = {}
    for suffix in re.findall(r"\bLDG(?:STS)?(?![A-Z])((?:\.[A-Z0-9_]+)*)", sass):
        parts = set(suffix.split("."))
        if "128" in parts or "64" in parts:
            bits = 128 if "128" in parts else 64
        else:
            bits = 16 if parts & {"U16", "S16"} else 8 if parts & {"U8", "S8"} else 32
        widths[bits] = widths.get(bits, 0) + 1
    return dict(sorted(widths.items()))


_SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")
_BRANCH = re.compile(r"\bBRA\b[^0-9]*0x([0-9a-f]+)")


def hot_loop(sass: str) -> list[str]:
    """The instructions of the loop that reads the gradients: the longest backward
    branch's body that holds global loads (``[]`` if there is none)."""
    code = [(int(a, 16), text.strip()) for a, text in _SASS_LINE.findall(sass)]
    best: list[str] = []
    for addr, text in code:
        m = _BRANCH.search(text)
        if m and int(m.group(1), 16) < addr:
            body = [t for a, t in code if int(m.group(1), 16) <= a <= addr]
            if any(re.search(r"\bLDG", t) for t in body) and len(body) > len(best):
                best = body
    return best


def loop_cost(sass: str, t: int, elem_bits: int) -> dict[str, Any]:
    """Warp-instructions the hot loop issues per gradient column (one element of each of
    the ``t`` tasks), the number that bounds an issue-limited pass.

    The columns one pass of the loop covers are counted from its own loads (a compiler
    may unroll it): every thread loads ``bits / elem_bits`` elements per load, ``t`` of
    which make one column; loads of padding rows predicated off (``!PT``) read nothing.
    """
    body = hot_loop(sass)
    loaded = 0
    for text in body:
        m = re.search(r"\bLDG(?:STS)?(?![A-Z])((?:\.[A-Z0-9_]+)*)", text)
        if m and "!PT" not in text.split(",")[-1]:
            loaded += next(iter(load_widths(m.group(0)))) // elem_bits
    columns = 32 * loaded / t  # per warp and pass of the loop
    return {
        "loop_instructions": len(body),
        "loop_ffma": sum(1 for x in body if re.search(r"\bFFMA\b", x)),
        "instructions_per_column": round(len(body) / columns, 3) if columns else None,
    }


def resources(
    kernel: str, t: int, dtype: str, arch: int, variant: str = "vector"
) -> dict[str, Any]:
    """Registers per thread, shared bytes, spill stores and load widths of one kernel."""
    compiled = _compile(kernel, t, dtype, arch, variant)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run(
            [CUOBJDUMP, "-res-usage", cubin], capture_output=True, text=True, check=True
        ).stdout
        sass = subprocess.run(
            [CUOBJDUMP, "-sass", cubin], capture_output=True, text=True, check=True
        ).stdout
    regs = re.search(r"REG:(\d+)", usage)
    return {
        "kernel": kernel,
        "tasks": t,
        "dtype": dtype,
        "arch": f"sm_{arch}",
        "variant": variant,
        "registers": int(regs.group(1)) if regs else None,
        "shared_bytes": compiled.metadata.shared,
        "num_warps": compiled.metadata.num_warps,
        "spill_stores": len(re.findall(r"\bSTL(?:\.\w+)*\b", sass)),
        "global_load_bits": load_widths(sass),
        **loop_cost(sass, t, 32 if dtype == "float32" else 16),
    }


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument(
        "--archs", type=int, nargs="+", default=[80, 90], help="80 = A100, 90 = H100/H200"
    )
    parser.add_argument(
        "--kernels", nargs="+", default=["gram", "weighted_sum"],
        choices=["gram", "weighted_sum", "gram_float64"],
        help="gram_float64: the range check's float64 pass 1 (a rare step's; not by default)",
    )  # fmt: skip
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
        help="vector: aligned gradients, n divisible by 16; aligned-odd: n not; unaligned: views",
    )  # fmt: skip
    parser.add_argument("--check", action="store_true", help="exit 1 if any kernel spills")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)
    if min(args.tasks) < 1:
        parser.error("--tasks must be >= 1")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: the interpreter cannot compile for a GPU")
    if not CUOBJDUMP.exists():
        print(f"Triton's NVIDIA backend tools are missing ({CUOBJDUMP})", file=sys.stderr)
        return 2
    rows = [
        resources(kernel, t, dtype, arch, variant)
        for variant in args.variants
        for kernel in args.kernels
        for arch in args.archs
        for dtype in args.dtypes
        for t in args.tasks
    ]
    head = f"{'kernel':<13}{'arch':<7}{'dtype':<10}{'T':>4}{'warps':>6}{'regs':>6}{'shared':>8}"
    print(f"{head}{'variant':>12}{'spills':>7}{'ins/col':>8}  global loads (bits x count)")
    for r in rows:
        loads = " ".join(f"{b}x{n}" for b, n in r["global_load_bits"].items())
        print(
            f"{r['kernel']:<13}{r['arch']:<7}{r['dtype']:<10}{r['tasks']:>4}{r['num_warps']:>6}"
            f"{r['registers']:>6}{r['shared_bytes']:>8}{r['variant']:>12}"
            f"{r['spill_stores']:>7}{_fmt(r['instructions_per_column']):>8}  {loads}"
        )
    if args.json:  # one row per line: hundreds of rows stay readable in a diff
        lines = ",\n".join(json.dumps(r) for r in rows)
        Path(args.json).write_text(
            f'{{"triton": {json.dumps(triton.__version__)}, "rows": [\n{lines}\n]}}\n'
        )
    spilling = [r for r in rows if r["spill_stores"]]
    if args.check and spilling:
        print(f"{len(spilling)} of {len(rows)} kernels spill", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
