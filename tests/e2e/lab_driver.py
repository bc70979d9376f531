"""Drive JupyterLab in a Playwright page: open a notebook, run all cells, read what rendered.

Everything goes through JupyterLab's own application object (``window.jupyterapp``, exposed
by ``--LabApp.expose_app_in_browser``): the same commands a person triggers from the menu
(``notebook:run-all-cells``), the notebook's cell models for outputs (so an error is an
``output_type == "error"``, not a guess from red text), and each cell's DOM node for what the
browser actually drew (plotly graphs and their size, widget views and their placeholders).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Text ipywidgets' JupyterLab renderer shows while a view is pending, or when it failed.
WIDGET_PLACEHOLDERS = ("Loading widget...", "Error displaying widget", "Error creating widget")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# JavaScript run in the page. `path` is the notebook's path relative to the server root.
_JS_FIND = """
window.__mbkFind = (path) => {
  const app = window.jupyterapp;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.widgets) return w;
  }
  return null;
};
"""

_JS_READY = """
async (path) => {
  const w = window.__mbkFind(path);
  if (!w) return 'no-widget';
  await w.context.ready;
  await w.sessionContext.ready;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  if (!kernel) return 'no-kernel';
  return kernel.status;
}
"""

_JS_RUN_ALL = """
(path) => {
  const app = window.jupyterapp;
  const w = window.__mbkFind(path);
  app.shell.activateById(w.id);
  window.__mbkRunResult = undefined;
  app.commands.execute('notebook:run-all-cells').then(
    (ok) => { window.__mbkRunResult = {ok: ok !== false}; },
    (err) => { window.__mbkRunResult = {ok: false, error: String(err)}; });
}
"""

_JS_RUNNING = """
(path) => {
  const w = window.__mbkFind(path);
  return w.content.widgets.map((c, i) => {
    const prompt = c.node.querySelector('.jp-InputPrompt');
    return [i, c.model.type === 'code' ? c.model.executionCount : null,
            prompt ? prompt.textContent : ''];
  });
}
"""

_JS_COLLECT = """
(path) => {
  const w = window.__mbkFind(path);
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = w.content.widgets.map((cell, i) => {
    const m = cell.model;
    const src = m.sharedModel.getSource();
    const outputs = m.type === 'code' ? m.outputs.toJSON() : [];
    const node = cell.node;
    node.dataset.mbkCell = String(i);
    return {
      index: i,
      cell_type: m.type,
      source: src,
      execution_count: m.type === 'code' ? m.executionCount : null,
      outputs: outputs.map((o) => ({
        output_type: o.output_type,
        name: o.name || null,
        ename: o.ename || null,
        evalue: o.evalue || null,
        traceback: o.traceback || null,
        mimes: o.data ? Object.keys(o.data) : [],
        text: typeof o.text === 'string' ? o.text.slice(0, 2000)
              : (Array.isArray(o.text) ? o.text.join('').slice(0, 2000) : null),
      })),
      plots: [...node.querySelectorAll('.jp-OutputArea .js-plotly-plot')].map(box),
      // ipywidgets' renderer is a Lumino Panel; it hides itself when its widget is closed
      widget_views: [...node.querySelectorAll('.jp-OutputArea-output')]
        .filter((el) => el.classList.contains('lm-Panel') || el.querySelector('.jupyter-widgets')
                        || /(Loading|Error displaying|Error creating) widget/.test(el.textContent))
        .map((el) => ({size: box(el), text: el.textContent.slice(0, 300),
                       hidden: el.classList.contains('lm-mod-hidden')})),
      placeholders: [...node.querySelectorAll('.jp-OutputArea-output')]
        .map((el) => el.textContent.trim())
        .filter((t) => /^(Loading widget|Error displaying widget|Error creating widget)/.test(t)),
    };
  });
  return {cells, kernel_status: kernel ? kernel.status : 'none'};
}
"""

_JS_FIGURE_STATE = """
(index) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets[index];
  const parts = [];
  for (const gd of cell.node.querySelectorAll('.js-plotly-plot')) {
    const layout = gd.layout || {};
    parts.push(JSON.stringify({data: gd.data || null, annotations: layout.annotations || null,
                               shapes: layout.shapes || null}));
    for (const p of gd.querySelectorAll('svg path')) parts.push(p.getAttribute('d') || '');
  }
  return parts.join('\\n');
}
"""


@dataclass
class CellResult:
    """What one cell produced: its outputs (from the model) and what the browser drew."""

    index: int
    cell_type: str
    source: str
    execution_count: int | None
    outputs: list[dict[str, Any]]
    plots: list[list[float]]
    widget_views: list[dict[str, Any]]
    placeholders: list[str]

    @property
    def first_line(self) -> str:
        lines = [ln for ln in self.source.splitlines() if ln.strip()]
        return lines[0][:100] if lines else ""

    @property
    def errors(self) -> list[str]:
        """One line per error output: ``EName: value`` and the last traceback lines."""
        found = []
        for o in self.outputs:
            if o["output_type"] == "error":
                tb = _ANSI.sub("", "\n".join(o.get("traceback") or []))
                tail = "\n".join(tb.strip().splitlines()[-6:])
                found.append(f"{o['ename']}: {o['evalue']}\n{tail}".strip())
        return found

    def count_mime(self, mime: str) -> int:
        return sum(1 for o in self.outputs if mime in o["mimes"])

    def render_problems(self) -> list[str]:
        """What the outputs promise but the page did not draw."""
        problems = [f"widget not rendered: {text[:200]!r}" for text in self.placeholders]
        expected = self.count_mime(PLOTLY_MIME)
        drawn = [p for p in self.plots if p[0] > 0 and p[1] > 0]
        if len(drawn) < expected:
            problems.append(
                f"{expected} plotly figure(s) in the outputs but {len(drawn)} drawn with a"
                f" non-zero size (sizes {self.plots})"
            )
        if self.count_mime(WIDGET_MIME):
            # a hidden view is a widget closed by the notebook (e.g. tqdm with leave=False)
            shown = [v for v in self.widget_views if not v["hidden"]]
            if not self.widget_views:
                problems.append("widget output but no widget view in the page")
            problems.extend(
                f"widget view of zero size: {v}"
                for v in shown
                if v["size"][0] <= 0 or v["size"][1] <= 0
            )
        return problems


@dataclass
class NotebookRun:
    """The outcome of opening a notebook in JupyterLab and running all its cells."""

    path: str
    cells: list[CellResult] = field(default_factory=list)
    finished: bool = False
    run_error: str | None = None
    stuck_cell: int | None = None
    kernel_status: str = "unknown"
    seconds: float = 0.0
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def where(self, cell: CellResult) -> str:
        return (
            f"{self.path}, cell {cell.index} (execution_count {cell.execution_count},"
            f" starts {cell.first_line!r})"
        )

    def failures(self) -> list[str]:
        """Every problem found, each naming the notebook and the cell."""
        problems = []
        if not self.finished:
            where = f"cell {self.stuck_cell}" if self.stuck_cell is not None else "unknown cell"
            problems.append(f"{self.path}: run-all did not finish; still running {where}")
        if self.run_error:
            problems.append(f"{self.path}: run-all command failed: {self.run_error}")
        for err in self.page_errors:
            problems.append(f"{self.path}: uncaught JavaScript error in the page: {err}")
        errored = any(cell.errors for cell in self.cells)
        for cell in self.cells:
            for err in cell.errors:
                problems.append(f"{self.where(cell)}: error output\n{err}")
            if (
                self.finished
                and not errored
                and cell.cell_type == "code"
                and cell.source.strip()
                and cell.execution_count is None
            ):
                problems.append(f"{self.where(cell)}: not executed by run-all")
            problems.extend(f"{self.where(cell)}: {p}" for p in cell.render_problems())
        return problems

    def summary(self) -> dict[str, Any]:
        return {
            "notebook": self.path,
            "seconds": round(self.seconds, 1),
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
            "cells": len(self.cells),
            "plotly_figures_drawn": sum(len(c.plots) for c in self.cells),
            "widget_views": sum(len(c.widget_views) for c in self.cells),
            "failures": self.failures(),
            "page_errors": self.page_errors,
            "console_errors": self.console_errors,
            "screenshots": [str(p) for p in self.screenshots],
        }


def load_lab(page: Page, url: str, timeout_s: float = 120.0) -> None:
    """Load JupyterLab at ``url`` and wait until the application has started and restored."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=timeout_s * 1000)
    page.evaluate(
        """async () => {
          const app = window.jupyterapp;
          await app.started;
          await app.restored;
          if (app.shell.collapseLeft) app.shell.collapseLeft();  // more width for the figures
        }"""
    )
    page.evaluate(_JS_FIND)


def open_notebook(page: Page, path: str, timeout_s: float = 120.0) -> None:
    """Open ``path`` in the loaded JupyterLab (as File > Open does) and wait for an idle
    kernel."""
    page.evaluate(
        """async (path) => {
          await window.jupyterapp.commands.execute('docmanager:open',
                                                   {path, factory: 'Notebook'});
        }""",
        path,
    )
    page.wait_for_function(
        "(path) => window.__mbkFind(path) !== null", arg=path, timeout=timeout_s * 1000
    )
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        _accept_dialogs(page)
        status = page.evaluate(_JS_READY, path)
        if status == "idle":
            return
        time.sleep(0.25)
    raise TimeoutError(f"{path}: kernel not idle after {timeout_s:.0f} s (status {status!r})")


def close_notebook(page: Page, path: str) -> None:
    """Shut the notebook's kernel down and close its tab without saving."""
    page.evaluate(
        """async (path) => {
          const w = window.__mbkFind(path);
          if (!w) return;
          await w.sessionContext.shutdown();
          w.dispose();
        }""",
        path,
    )


def _accept_dialogs(page: Page) -> None:
    """Accept a modal JupyterLab dialog (e.g. a kernel choice) if one is open."""
    button = page.locator(".jp-Dialog .jp-mod-accept")
    if button.count():
        button.first.click()


def run_all_cells(page: Page, path: str, timeout_s: float) -> NotebookRun:
    """Run every cell through ``notebook:run-all-cells`` and wait for it to finish."""
    run = NotebookRun(path=path)
    start = time.monotonic()
    page.evaluate(_JS_RUN_ALL, path)
    try:
        page.wait_for_function(
            "() => window.__mbkRunResult !== undefined", timeout=timeout_s * 1000, polling=250
        )
        result = page.evaluate("() => window.__mbkRunResult")
        run.finished = True
        if result.get("error"):
            run.run_error = result["error"]
    except Exception:  # playwright's TimeoutError: name the cell still running
        for index, _count, prompt in page.evaluate(_JS_RUNNING, path):
            if "*" in prompt:
                run.stuck_cell = index
                break
    run.seconds = time.monotonic() - start
    return run


def wait_for_rendering(page: Page, path: str, timeout_s: float = 30.0) -> None:
    """Give widget views and plotly figures time to draw: until every cell draws what its
    outputs promise (or ``timeout_s``; what is still missing then is a failure)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cells = [CellResult(**c) for c in page.evaluate(_JS_COLLECT, path)["cells"]]
        if not any(c.render_problems() for c in cells):
            return
        time.sleep(0.5)


def collect(page: Page, run: NotebookRun) -> NotebookRun:
    """Fill ``run.cells`` from the notebook's models and the page."""
    state = page.evaluate(_JS_COLLECT, run.path)
    run.kernel_status = state["kernel_status"]
    run.cells = [CellResult(**c) for c in state["cells"]]
    return run


def cell_index_containing(run: NotebookRun, text: str) -> int | None:
    """The index of the first code cell whose source contains ``text``."""
    for cell in run.cells:
        if cell.cell_type == "code" and text in cell.source:
            return cell.index
    return None


def figure_state(page: Page, cell_index: int) -> str:
    """Every plotly figure's data, annotations, shapes and SVG paths in one cell, as text."""
    return str(page.evaluate(_JS_FIGURE_STATE, cell_index))


def first_slider(page: Page, cell_index: int) -> Locator:
    """The handle of the first ipywidgets slider in a cell's outputs."""
    cell = page.locator(f'[data-mbk-cell="{cell_index}"]')
    return cell.locator(".jp-OutputArea .widget-slider .noUi-handle").first


def slider_value(page: Page, cell_index: int) -> str:
    """The first slider's value as the page shows it (its readout, else its aria value)."""
    cell = page.locator(f'[data-mbk-cell="{cell_index}"]')
    readout = cell.locator(".jp-OutputArea .widget-slider .widget-readout").first
    if readout.count():
        return readout.inner_text()
    return first_slider(page, cell_index).get_attribute("aria-valuenow") or ""


def move_first_slider(page: Page, cell_index: int, presses: int = 3) -> None:
    """Focus the first slider handle in the cell's outputs and press ArrowRight ``presses``
    times; at the top of its range, ArrowLeft instead."""
    handle = first_slider(page, cell_index)
    handle.scroll_into_view_if_needed()
    handle.focus()
    now = handle.get_attribute("aria-valuenow")
    top = handle.get_attribute("aria-valuemax")
    key = "ArrowLeft" if now is not None and now == top else "ArrowRight"
    for _ in range(presses):
        handle.press(key)
        time.sleep(0.1)


def wait_for_change(page: Page, cell_index: int, before: str, timeout_s: float = 20.0) -> bool:
    """Poll until the figure state of the cell differs from ``before``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if figure_state(page, cell_index) != before:
            return True
        time.sleep(0.2)
    return False


def screenshot_notebook(page: Page, run: NotebookRun, out_dir: Path, stem: str) -> list[Path]:
    """``<stem>.png``: the whole notebook (viewport stretched to its height, capped), and
    ``<stem>/cell-NN.png`` for every cell that shows a figure or a widget."""
    out_dir.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or {"width": 1400, "height": 900}
    # the notebook's own scroll area: from its top to the bottom of the last cell
    measure = """(path) => {
          const w = window.__mbkFind(path);
          const outer = w.content.node.querySelector('.jp-WindowedPanel-outer') || w.content.node;
          outer.scrollTop = 0;
          const cells = w.content.widgets;
          const last = cells.length ? cells[cells.length - 1].node : outer;
          const top = outer.getBoundingClientRect().top;
          return Math.ceil(last.getBoundingClientRect().bottom - top
                           + outer.getBoundingClientRect().top + 60);
        }"""
    height = page.evaluate(measure, run.path)
    page.set_viewport_size({"width": original["width"], "height": max(600, min(height, 16000))})
    page.wait_for_timeout(800)  # plotly redraws on resize
    page.evaluate(measure, run.path)  # back at the top after the resize
    shots = []
    whole = out_dir / f"{stem}.png"
    page.screenshot(path=str(whole))
    shots.append(whole)
    for cell in run.cells:
        if not (cell.plots or cell.widget_views):
            continue
        target = out_dir / stem / f"cell-{cell.index:02d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.locator(f'[data-mbk-cell="{cell.index}"]').screenshot(path=str(target))
        shots.append(target)
    page.set_viewport_size(original)
    run.screenshots.extend(shots)
    return shots


def screenshot_cell(page: Page, cell_index: int, target: Path) -> Path:
    """One cell (input and outputs), the viewport stretched so that all of it is visible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or {"width": 1400, "height": 900}
    cell = page.locator(f'[data-mbk-cell="{cell_index}"]')
    box = cell.bounding_box()
    height = int(box["height"]) + 300 if box else original["height"]
    page.set_viewport_size({"width": original["width"], "height": max(original["height"], height)})
    try:
        page.wait_for_timeout(300)
        cell.screenshot(path=str(target))
    finally:
        page.set_viewport_size(original)
    return target


def write_report(run: NotebookRun, out_dir: Path, stem: str) -> Path:
    """``<stem>.json``: the run's summary (failures, counts, screenshots, page errors)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}.json"
    target.write_text(json.dumps(run.summary(), indent=2))
    return target
