"""The source of the Triton kernels, for notebook 06, without importing Triton.

``inspect.getsource`` needs the module imported, and ``mbkernels.ops.triton_ops`` imports
Triton, which exists only on Linux. Reading the file with :mod:`ast` shows the same text on
macOS and Windows too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mbkernels.ops

#: The file that holds the kernels.
TRITON_OPS = Path(mbkernels.ops.__file__).with_name("triton_ops.py")


def kernel_names() -> list[str]:
    """Names of the ``@triton.jit`` functions in ``mbkernels/ops/triton_ops.py``."""
    tree = ast.parse(TRITON_OPS.read_text(encoding="utf-8"))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("jit" in ast.unparse(d) for d in node.decorator_list)
    ]


def kernel_source(name: str) -> str:
    """The source text of the function ``name`` in ``mbkernels/ops/triton_ops.py``,
    decorators included."""
    text = TRITON_OPS.read_text(encoding="utf-8")
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            lines = text.splitlines()
            start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
            assert node.end_lineno is not None
            return "\n".join(lines[start : node.end_lineno]) + "\n"
    raise ValueError(f"name must be a function of {TRITON_OPS.name}, one of {kernel_names()}")
