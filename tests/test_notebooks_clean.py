"""The course notebooks are stored clean, and each one has the parts a lesson needs.

Outputs are not stored (nbval executes every cell in the test run anyway), so a
diff of a notebook shows only what a person changed. `tools/clean_notebooks.py`
fixes a notebook saved from JupyterLab.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))

sys.path.insert(0, str(ROOT / "tools"))
from clean_notebooks import clean, serialise  # noqa: E402

FIX = "run `python tools/clean_notebooks.py` before committing"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _source(nb: nbformat.NotebookNode, cell_type: str) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == cell_type)


def test_course_has_its_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert "00_start_here.ipynb" in names and "06_inside_the_triton_kernel.ipynb" in names
    assert len({n[:2] for n in names}) == len(names), f"duplicate notebook numbers: {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path: Path) -> None:
    nb = _read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has stored outputs; {FIX}"
            assert cell.execution_count is None, f"{path.name} cell {i}: execution count; {FIX}"
        assert "id" in cell, f"{path.name} cell {i} has no id (stable ids keep diffs small)"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state; {FIX}"
    assert path.read_text() == serialise(clean(_read(path))), f"{path.name} is not clean; {FIX}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_structure(path: Path) -> None:
    """Learning goals, a SIZE knob first, an interactive figure, an exercise with a
    self-check, and a separate solution file that exists."""
    nb = _read(path)
    markdown, code = _source(nb, "markdown"), _source(nb, "code")
    assert "Learning goals" in markdown, f"{path.name}: state the learning goals"
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert re.match(r"SIZE = \d+", first_code), f"{path.name}: first code cell must set SIZE"
    assert "widgets." in code or "FigureWidget" in code or "mbviz.widgets" in code, (
        f"{path.name}: needs at least one interactive figure"
    )
    assert re.search(r"\bcheck_\w+\(", code), f"{path.name}: the exercise needs a self-check"
    solution = NOTEBOOK_DIR / "solutions" / f"{path.stem}.py"
    assert solution.exists(), f"{path.name}: solution file {solution.relative_to(ROOT)} missing"
    assert "import mbkernels" in code or "from mbviz" in code, (
        f"{path.name}: notebooks call the library instead of carrying copies of it"
    )
