"""Start and stop a whole e2e session in its own process, and record every process it saw.

``python -m tests.e2e.process_probe CHROMIUM WORKDIR OUT.json`` starts a JupyterLab server,
one kernel and Chromium through Playwright (the helpers the session fixture uses), loads a
page, stops everything, and writes ``{"seen": {pid: create_time}, "names": {pid: name}}``.
``test_processes.py`` runs it in a subprocess (Playwright's sync API allows one instance per
thread, and the session's is running) and checks afterwards that none of them survived.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil

from .jupyter_server import LabServer
from .lab_session import chromium_context


def probe(chromium: Path, work: Path) -> tuple[dict[int, float], dict[int, str]]:
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    server = LabServer(root_dir=root, state_dir=work / "state")
    seen: dict[int, float] = {}
    names: dict[int, str] = {}
    server.start()
    try:
        server.api("kernels", method="POST", body={"name": "python3"})
        deadline = time.monotonic() + 60
        while not server.descendants() and time.monotonic() < deadline:
            time.sleep(0.2)
        with chromium_context(chromium, work / "profile", seen) as context:
            page = context.new_page()
            page.goto(server.url("api/status"))
            if "started" not in page.content():
                raise RuntimeError(f"unexpected /api/status page: {page.content()[:300]}")
            for pid in [*seen, *server.seen, *(p.pid for p in server.descendants())]:
                try:
                    names[pid] = psutil.Process(pid).name()
                except psutil.NoSuchProcess:
                    pass
    finally:
        server.stop()
    seen.update(server.seen)
    return seen, names


def main(argv: list[str]) -> None:
    chromium, work, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    seen, names = probe(chromium, work)
    out.write_text(json.dumps({"seen": seen, "names": names}))


if __name__ == "__main__":
    main(sys.argv[1:])
