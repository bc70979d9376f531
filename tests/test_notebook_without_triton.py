"""Notebook 06 runs where Triton does not exist (macOS, Windows): PyTorch path, clear note.

The kernel is started with ``triton`` blocked the way a missing package behaves for the
library's check (``importlib.util.find_spec("triton") is None``, ``import triton`` fails), by
a ``sitecustomize`` on its ``PYTHONPATH``. Every cell must run; the notebook must say that
Triton is missing, show the kernels' source anyway, and the exercise must point to the
solution instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "06_inside_the_triton_kernel.ipynb"

BLOCK_TRITON = """\
import sys

sys.modules["triton"] = None  # as if the package were not installed
"""


@pytest.mark.slow
def test_notebook_06_without_triton(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TRITON)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    env.pop("TRITON_INTERPRET", None)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute(env=env)  # passed on to the kernel manager's start_kernel
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "Triton is not installed here" in text
    assert "read the solution" in text  # the exercise's check, instead of an error
    html = "\n".join(
        str(out.get("data", {}).get("text/html", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "_weighted_sum_kernel" in html + text  # the kernels' source is still shown
