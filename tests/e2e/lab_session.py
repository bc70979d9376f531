"""One JupyterLab server and one headless Chromium for the whole test session.

:class:`LabSession` runs notebooks one at a time, each in a fresh page: open, run all cells,
collect outputs and rendering, save screenshots and a JSON summary under the artefact
folder. The result of each notebook is cached, so several tests can look at one run; the
page of the latest run stays open for interaction (the slider tests), and the previous
page and its kernel are shut down before the next notebook opens.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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

    def run(self, path: str) -> lab_driver.NotebookRun:
        """Open ``path`` (relative to the server root), run all cells, check and screenshot.
        Cached: a second call returns the first result."""
        if path in self.runs:
            return self.runs[path]
        self._close_page()
        page = self.context.new_page()
        self._page_errors, self._console_errors = [], []
        page.on("pageerror", lambda exc: self._page_errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: self._console_errors.append(msg.text) if msg.type == "error" else None,
        )
        self.page, self.page_path = page, path
        lab_driver.open_notebook(page, self.server.url(f"lab/tree/{path}?reset"), path)
        self.server.descendants()  # remember the kernel's pid for the leftover check
        run = lab_driver.run_all_cells(page, path, self.run_timeout_s)
        if run.finished:
            lab_driver.wait_for_rendering(page, path)
        lab_driver.collect(page, run)
        run.page_errors = self._page_errors
        run.console_errors = self._console_errors
        stem = stem_of(path)
        lab_driver.screenshot_notebook(page, run, self.artifacts, stem)
        lab_driver.write_report(run, self.artifacts, stem)
        self.runs[path] = run
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


def own_descendants() -> dict[int, float]:
    """This process's children (recursively): pid -> create time."""
    found = {}
    for p in psutil.Process().children(recursive=True):
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
            yield context
            seen.update({k: v for k, v in own_descendants().items() if k not in before})
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
