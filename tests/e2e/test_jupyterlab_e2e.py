"""The course in a real browser: JupyterLab + headless Chromium, every notebook run from the UI.

nbval proves the kernel side; this proves what a person sees. For each notebook found in
``notebooks/`` at collection time (so new ones are covered without editing this file):
run all cells from JupyterLab, then no cell has an error output, every plotly figure in the
outputs is drawn with a non-zero size, every widget output is drawn (no "Loading widget..."
placeholder), and screenshots land in ``artifacts/e2e/``. In the gradient playground
(``notebooks/02_*``, the cell containing ``GradientPlayground(``), moving the first slider
(the angle) changes the figure.

The harness checks itself on ``fixtures/``: a notebook with a FigureWidget wired to a
slider, a plain figure and tqdm progress bars, and a notebook with a widget that cannot
render (cell 1) and an exception (cell 2).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import lab_driver
from .conftest import REPO
from .lab_session import LabSession, stem_of

NOTEBOOKS = sorted(
    p.relative_to(REPO).as_posix() for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")
)
PLAYGROUND_NOTEBOOKS = [p for p in NOTEBOOKS if Path(p).name.startswith("02_")]
#: Contract with the course: the playground cell contains this text, and the playground's
#: first slider is the angle between the two task gradients.
PLAYGROUND_MARK = "GradientPlayground("
WIDGET_FIXTURE = "fixtures/widgets_fixture.ipynb"
ERROR_FIXTURE = "fixtures/error_fixture.ipynb"

# one JupyterLab and one browser for the session: keep these tests on one xdist worker
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def _assert_no_failures(run: lab_driver.NotebookRun, artifacts: Path) -> None:
    failures = run.failures()
    where = artifacts / f"{stem_of(run.path)}.png"
    assert not failures, "\n\n".join(failures) + f"\n\n(screenshot: {where})"


def _check_slider_moves_figure(lab: LabSession, path: str, mark: str) -> None:
    run = lab.run(path)
    index = lab_driver.cell_index_containing(run, mark)
    assert index is not None, f"{path}: no code cell contains {mark!r}"
    cell = run.cells[index]
    assert not cell.errors, f"{run.where(cell)}: error output\n" + "\n".join(cell.errors)
    page = lab.live_page(path)
    handle = lab_driver.first_slider(page, index)
    assert handle.count(), f"{run.where(cell)}: no ipywidgets slider drawn in its outputs"
    before = lab_driver.figure_state(page, index)
    assert before, f"{run.where(cell)}: no plotly figure drawn in its outputs"
    value_before = lab_driver.slider_value(page, index)
    lab_driver.move_first_slider(page, index)
    changed = lab_driver.wait_for_change(page, index, before)
    value_after = lab_driver.slider_value(page, index)
    shot = lab.artifacts / stem_of(path) / f"cell-{index:02d}-after-slider.png"
    lab_driver.screenshot_cell(page, index, shot)
    assert value_after != value_before, (
        f"{run.where(cell)}: the first slider did not move (value {value_before!r})"
    )
    assert changed, (
        f"{run.where(cell)}: the first slider moved from {value_before!r} to {value_after!r}"
        f" but the plotly figure did not change (see {shot})"
    )


def test_fixture_slider_changes_figure(lab: LabSession) -> None:
    _check_slider_moves_figure(lab, WIDGET_FIXTURE, "FixturePlayground")


def test_fixture_notebook_renders(lab: LabSession) -> None:
    run = lab.run(WIDGET_FIXTURE)
    _assert_no_failures(run, lab.artifacts)
    # the harness really saw what the fixture shows: a FigureWidget inside a widget box,
    # and a plain figure, both drawn, and the last cell's output
    widget_cell = run.cells[lab_driver.cell_index_containing(run, "FixturePlayground") or 0]
    plain_cell = run.cells[lab_driver.cell_index_containing(run, "go.Bar(") or 0]
    assert len(widget_cell.widget_views) == 1 and len(widget_cell.plots) == 1
    assert plain_cell.count_mime(lab_driver.PLOTLY_MIME) == 1 and len(plain_cell.plots) == 1
    assert all(w > 100 and h > 100 for w, h in widget_cell.plots + plain_cell.plots)
    # tqdm's bars: the closed one's view is hidden (not a failure), the kept one is drawn
    bars = run.cells[lab_driver.cell_index_containing(run, "TqdmBars") or 0]
    assert sorted(v["hidden"] for v in bars.widget_views) == [False, True], bars.widget_views
    assert run.cells[-1].outputs[0]["text"].startswith("done")
    assert (lab.artifacts / "fixtures-widgets_fixture.png").stat().st_size > 10_000


def test_failure_message_names_notebook_and_cell(lab: LabSession) -> None:
    run = lab.run(ERROR_FIXTURE, render_timeout_s=5)
    failures = run.failures()
    assert len(failures) == 2, failures
    widget, error = failures
    assert widget.startswith(f"{ERROR_FIXTURE}, cell 1 (execution_count 1,")
    assert "widget not rendered: 'Error displaying widget" in widget
    assert error.startswith(f"{ERROR_FIXTURE}, cell 2 (execution_count 2,")
    assert "ZeroDivisionError: fixture error on purpose" in error
    assert run.cells[3].execution_count is None  # run-all stopped at the error


@pytest.mark.skipif(not PLAYGROUND_NOTEBOOKS, reason="no notebooks/02_*.ipynb yet")
def test_gradient_playground_slider_changes_figure(lab: LabSession) -> None:
    _check_slider_moves_figure(lab, PLAYGROUND_NOTEBOOKS[0], PLAYGROUND_MARK)


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_in_browser(lab: LabSession, path: str) -> None:
    run = lab.run(path)
    _assert_no_failures(run, lab.artifacts)
    assert run.screenshots and all(p.stat().st_size > 0 for p in run.screenshots)
