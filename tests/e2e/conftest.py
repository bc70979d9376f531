"""Fixtures for the end-to-end tests: one JupyterLab server and one Chromium per session.

Environment knobs (see docs/e2e.md):
- ``MBK_E2E_CHROMIUM``: the browser binary (default ``/usr/bin/chromium``).
- ``MBK_E2E_ARTIFACTS``: where screenshots and JSON summaries go (default ``artifacts/e2e``).
- ``MBK_E2E_RUN_TIMEOUT``: seconds one notebook's run-all may take (default 300).
Without Chromium the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import INSTALL_HINT, find_chromium, in_ci
from .jupyter_server import LabServer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The fixture notebooks are inputs of the browser test, not nbval tests: one fails on purpose.
collect_ignore_glob = ["fixtures/*.ipynb"]


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Path:
    path = find_chromium()
    _require(path is not None, f"no Chromium found: {INSTALL_HINT}")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("MBK_E2E_ARTIFACTS", REPO / "artifacts" / "e2e"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def lab(chromium: Path, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The session's :class:`~tests.e2e.lab_session.LabSession`. On teardown the server,
    its kernels, Playwright and Chromium are stopped, and the teardown fails if any process
    it started is still running."""
    try:
        from .lab_session import LabSession, chromium_context, leftovers, stage_root
    except ImportError as exc:  # playwright or psutil missing
        _require(False, f"the e2e tools are not installed ({exc}): pip install -e '.[test]'")
        raise

    base = tmp_path_factory.mktemp("e2e")
    root = stage_root(REPO, FIXTURES, base / "root")
    server = LabServer(root_dir=root, state_dir=base / "state")
    seen: dict[int, float] = {}
    timeout = float(os.environ.get("MBK_E2E_RUN_TIMEOUT", "300"))
    server.start()
    try:
        with chromium_context(chromium, base / "profile", seen) as context:
            yield LabSession(
                server=server, context=context, artifacts=artifacts_dir, run_timeout_s=timeout
            )
    finally:
        server.stop()
        (artifacts_dir / "jupyter-lab.log").write_text(server.log_tail(200_000))
    seen.update(server.seen)
    left = leftovers(seen)
    assert not left, f"processes started by the e2e session still running: {left}"
