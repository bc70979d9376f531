"""The headless path: ``python -m mbviz report`` writes an HTML file that a browser opens.

For a machine where JupyterLab is not wanted (a server, CI), the README's command writes one
self-contained page. This runs the command as typed, from the repository root, opens the
file in headless Chromium (no network: plotly.js must be inlined) and checks that every
figure was drawn by plotly.js in the page, not only present as a script.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CHROMIUM_RENDER = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--hide-scrollbars",
    # run the page's scripts to completion (plotly draws asynchronously) before dumping
    "--virtual-time-budget=30000",
)


def _chromium(chromium: Path, *args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(chromium), *CHROMIUM_RENDER, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_command_writes_a_page_a_browser_draws(
    chromium: Path, tmp_path: Path, artifacts_dir: Path
) -> None:
    out = tmp_path / "report.html"
    run = subprocess.run(
        [sys.executable, "-m", "mbviz", "report", "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"wrote {out}" in run.stdout
    html = out.read_text(encoding="utf-8")
    sections = re.findall(r'<section id="s(\d\d)">', html)
    figures = html.count("Plotly.newPlot(")
    assert len(sections) >= 8 and figures >= len(sections), (sections, figures)

    dom = _chromium(chromium, "--dump-dom", out.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    # every section is in the page, and every figure was drawn (plotly adds these classes
    # and its SVG layers only when it renders)
    assert re.findall(r'<section id="s(\d\d)">', page) == sections
    drawn = re.findall(r'class="plotly-graph-div js-plotly-plot"', page)
    assert len(drawn) == figures, f"{len(drawn)} of {figures} figures drawn"
    assert page.count('class="main-svg"') >= figures

    shot = artifacts_dir / "report.png"
    _chromium(
        chromium,
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        out.as_uri(),
        profile=tmp_path / "profile2",
    )
    assert shot.exists() and shot.stat().st_size > 10_000
