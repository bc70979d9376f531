"""The e2e machinery leaves nothing running: the server, its kernels, Playwright's driver and
every Chromium process end when the helpers stop them.

``process_probe`` starts a small session (server, one kernel, a browser page) with the same
helpers the session fixture uses, records every process that appeared, and stops everything;
it runs in a subprocess because Playwright's sync API allows one instance per thread (the
session's is running). Then this test checks that each recorded process is gone. The session
fixture runs the same check at its own teardown (``conftest.lab``), so a leak in the real run
fails too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO
from .jupyter_server import still_running

# an e2e test (it starts JupyterLab and Chromium), on the e2e tests' xdist worker
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def test_server_kernels_and_browser_are_stopped(chromium: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.e2e.process_probe", str(chromium), str(tmp_path), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    seen = {int(pid): created for pid, created in report["seen"].items()}
    names = " ".join(report["names"].values()).lower()
    # the server, its kernel, Playwright's driver and Chromium were all seen...
    assert "python" in names and "chrom" in names and "node" in names, names
    assert len(seen) >= 4, report
    # ...and none of them is left
    assert not still_running(seen), {p: report["names"].get(str(p)) for p in still_running(seen)}
