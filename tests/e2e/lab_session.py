"""One JupyterLab server, one headless Chromium and one JupyterLab page for the session.

:class:`LabSession` runs notebooks one at a time in that page, as a person would: open the
notebook, run all cells, then the test collects outputs and rendering, and saves screenshots
and a JSON summary under the artefact folder. The result of each notebook is cached, so
several tests can look at one run; the latest notebook stays open for interaction (the
slider tests), and is closed, its kernel shut down, before the next one opens.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from playwright.sync_api import BrowserContext, Page, sync_playwright

from . import lab_driver
from .browser import launch_args
from .jupyter_server import LabServer, still_running

VIEWPORT = {"width": 1400, "height": 900}


@dataclass
class LabSession:
    server: LabServer
    context: BrowserContext
    artifacts: Path
    run_timeout_s: float
    runs: dict[str, lab_driver.NotebookRun] = field(default_factory=dict)
    page: Page | None = None
    page_path: str | None = None
    _page_errors: list[str] = field(default_factory=list)
    _console_errors: list[str] = field(default_factory=list)

    def _close_page(self) -> None:
        if self.page is not None:
            self.page.close()
            self.page = None
            self.page_path = None
        self.server.shutdown_kernels()

    def _ready_page(self) -> Page:
        """The session's JupyterLab page, loaded once; the previous notebook closed."""
        if self.page is not None and self.page_path is not None:
            try:
                lab_driver.close_notebook(self.page, self.page_path)
                self.page_path = None
            except Exception:  # a broken page: start a fresh one
                self._close_page()
        if self.page is None:
            page = self.context.new_page()
            page.on("pageerror", lambda exc: self._page_errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: self._console_errors.append(msg.text) if msg.type == "error" else None,
            )
            lab_driver.load_lab(page, self.server.url("lab?reset"))
            self.page = page
        return self.page

    def run(self, path: str, render_timeout_s: float = 30.0) -> lab_driver.NotebookRun:
        """Open ``path`` (relative to the server root), run all cells, check and screenshot;
        wait up to ``render_timeout_s`` for figures and widgets to draw. Cached: a second call
        returns the first result."""
        if path in self.runs:
            return self.runs[path]
        page = self._ready_page()
        self._page_errors.clear()
        self._console_errors.clear()
        t0 = time.monotonic()
        lab_driver.open_notebook(page, path)
        opened = time.monotonic()
        self.page_path = path
        self.server.descendants()  # remember the kernel's pid for the leftover check
        run = lab_driver.run_all_cells(page, path, self.run_timeout_s)
        if run.finished:
            lab_driver.wait_for_rendering(page, path, render_timeout_s)
        lab_driver.collect(page, run)
        run.page_errors = list(self._page_errors)
        run.console_errors = list(self._console_errors)
        rendered = time.monotonic()
        stem = stem_of(path)
        lab_driver.screenshot_notebook(page, run, self.artifacts, stem)
        run.timings = {
            "open_s": opened - t0,
            "run_all_s": run.seconds,
            "render_and_collect_s": rendered - opened - run.seconds,
            "screenshots_s": time.monotonic() - rendered,
        }
        lab_driver.write_report(run, self.artifacts, stem)
        self.runs[path] = run
        if not run.finished:  # a stuck kernel: the next notebook gets a fresh page
            self._close_page()
        return run

    def live_page(self, path: str) -> Page:
        """The page where ``path`` ran, still open (re-running the notebook if it was closed)."""
        if self.page_path != path:
            self.runs.pop(path, None)
            self.run(path)
        assert self.page is not None
        return self.page


def stem_of(path: str) -> str:
    """``notebooks/02_x.ipynb`` -> ``02_x``; a fixture -> ``fixtures-<name>``."""
    p = Path(path)
    return p.stem if p.parent.name == "notebooks" else f"{p.parent.name}-{p.stem}"


def stage_root(repo: Path, fixtures: Path, root: Path) -> Path:
    """Copy the course and the fixtures into ``root``: JupyterLab serves the copies, so
    nothing it does (checkpoints, a save) can touch the repository's notebooks."""
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    if (repo / "notebooks").is_dir():
        shutil.copytree(repo / "notebooks", root / "notebooks", ignore=ignore)
    shutil.copytree(fixtures, root / "fixtures", ignore=ignore)
    return root


def own_descendants(roots: Iterable[int] | None = None) -> dict[int, float]:
    """Descendants (recursively) of ``roots``, default this process: pid -> create time."""
    found = {}
    for root in [None] if roots is None else list(roots):
        try:
            children = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in children:
            try:
                found[p.pid] = p.create_time()
            except psutil.NoSuchProcess:
                pass
    return found


@contextmanager
def chromium_context(
    executable: Path, profile_dir: Path, seen: dict[int, float]
) -> Iterator[BrowserContext]:
    """Playwright driving ``executable`` headless with a fresh profile; every process that
    appears under this one meanwhile (Playwright's driver, Chromium's) goes into ``seen``."""
    before = own_descendants()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=str(executable),
            args=launch_args(),
            headless=True,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        try:
            seen.update({k: v for k, v in own_descendants().items() if k not in before})
            launched = dict(seen)
            yield context
            # Only what grew under Playwright and Chromium: the test process itself may
            # start helpers meanwhile (e.g. multiprocessing's resource tracker in other
            # tests of the same session) that live as long as it does.
            seen.update(own_descendants(launched))
        finally:
            context.close()


def leftovers(seen: dict[int, float]) -> list[str]:
    """``"pid name"`` for each process of ``seen`` still running."""
    out = []
    for pid in still_running(seen):
        try:
            out.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return out
