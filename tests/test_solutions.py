"""Every exercise's solution script runs and passes its own self-check.

The solutions live outside the notebooks (``notebooks/solutions/NN_<name>.py``) and end with
``assert check_...(...)``: a solution that no longer satisfies its check, or no longer runs
against the library, fails here.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.py"))


def test_every_notebook_has_a_solution() -> None:
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.stem for p in notebooks] == [p.stem for p in SOLUTIONS]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_passes_its_check(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    source = path.read_text()
    assert "assert check_" in source, f"{path.name} must end by asserting its self-check"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "correct!" in out and "not quite" not in out and "not answered" not in out, out
