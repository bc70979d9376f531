"""The README's first command, run the way a newcomer runs it.

``make course`` is typed from the repository root; it must start JupyterLab for root and
non-root users, on a machine without a display and with port 8888 taken, serve the course's
first notebook on loopback behind a token, print that URL last, and leave nothing running
after Ctrl-C. The end-to-end test runs exactly the README's command through ``make``; the
unit tests cover the decisions that depend on the machine (root, display).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
NOTEBOOK = "notebooks/00_start_here.ipynb"
STARTUP_TIMEOUT_S = 120.0
URL_RE = re.compile(
    r"^\s*http://127\.0\.0\.1:(?P<port>\d+)/lab/tree/"
    + re.escape(NOTEBOOK)
    + r"\?token=(?P<token>\w+)$"
)


def _load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "start_course", REPO / "tools" / "start_course.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


def readme_first_command() -> str:
    """The first line of the README's first ``bash`` block, without its comment."""
    block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert block, "README.md has no bash block"
    return block.group(1).splitlines()[0].split("#", 1)[0].strip()


def test_readme_opens_with_the_two_commands() -> None:
    block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert block is not None
    lines = [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines()]
    assert lines[:2] == ["make course", "make test"]
    assert readme_first_command() == "make course"


# --- the decisions that depend on the machine -------------------------------------------


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "linux", False),  # SSH session, container, CI
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"DISPLAY": ""}, "linux", False),
        ({}, "darwin", True),
        ({}, "win32", True),
    ],
)
def test_display_detection(env: dict[str, str], platform: str, expected: bool) -> None:
    assert launcher.has_display(env, platform) is expected


@pytest.mark.parametrize("root", [True, False])
@pytest.mark.parametrize("open_browser", [True, False])
def test_command_stays_on_loopback_with_a_token(root: bool, open_browser: bool) -> None:
    cmd = launcher.lab_command(port=8888, token="abc123", root=root, open_browser=open_browser)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert NOTEBOOK in cmd
    assert "--ServerApp.ip=127.0.0.1" in cmd
    assert "--IdentityProvider.token=abc123" in cmd
    assert "--ServerApp.port=8888" in cmd
    # the port is not fixed: JupyterLab moves on to the next free one
    assert f"--ServerApp.port_retries={launcher.PORT_RETRIES}" in cmd and launcher.PORT_RETRIES > 0
    assert ("--allow-root" in cmd) is root
    assert ("--no-browser" in cmd) is not open_browser
    # nothing that would widen access
    joined = " ".join(cmd)
    assert (
        "0.0.0.0" not in joined and "token=''" not in joined and "disable_check_xsrf" not in joined
    )


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_bad_port_names_the_parameter(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        launcher.main(["--port", port])
    assert exc.value.code == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err


# --- the README's command, run as a newcomer runs it --------------------------------------


def _in_repo_venv() -> bool:
    return Path(sys.prefix).resolve() == (REPO / ".venv").resolve()


class _Output:
    """Collects a process's output lines in a thread (a pipe must be drained)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                with self._lock:
                    self.lines.append(line.rstrip("\n"))

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def text(self) -> str:
        return "\n".join(self.snapshot())


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers of a GET, without following redirects."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.read().decode(errors="replace"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


@pytest.fixture
def port_8888_taken() -> Iterator[None]:
    """Port 8888 in use, as on a machine where another notebook server already runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 8888))
        sock.listen(1)
    except OSError:
        pass  # something on this machine holds it already: taken either way
    try:
        yield
    finally:
        sock.close()


def _stop_like_ctrl_c(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.slow
@pytest.mark.usefixtures("port_8888_taken")
def test_make_course_serves_the_first_notebook() -> None:
    if not _in_repo_venv():
        reason = "runs the README's `make course`, which uses .venv: run it through `make test`"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    command = readme_first_command()
    env = {k: v for k, v in os.environ.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY"}}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        command,
        shell=True,  # typed into a shell, from the repository root
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    out = _Output(proc)
    started: dict[int, float] = {}
    try:
        # 1. the URL comes out, within a bounded wait (make's install step included)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S + 60
        match = None
        while match is None and time.monotonic() < deadline:
            assert proc.poll() is None, f"`{command}` exited {proc.returncode}:\n{out.text()}"
            match = next((m for m in map(URL_RE.match, out.snapshot()) if m), None)
            time.sleep(0.2)
        assert match is not None, f"no URL within the wait:\n{out.text()[-4000:]}"
        time.sleep(1.5)  # anything printed right after start-up would come now
        lines = [ln for ln in out.snapshot() if ln.strip()]
        assert URL_RE.match(lines[-1]), f"the URL is not the last line:\n{lines[-5:]}"
        port, token = int(match["port"]), match["token"]
        text = out.text()
        assert ("--allow-root" in text) is (os.geteuid() == 0), text[-3000:]
        assert "No display here" in text and f"ssh -N -L {port}:127.0.0.1:{port}" in text
        assert port != 8888 and f"Port 8888 is taken; JupyterLab chose port {port}." in text

        # 2. the notebook is served, with the token
        base = f"http://127.0.0.1:{port}"
        status, body, _ = _get(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
        assert status == 200 and "JupyterLab" in body, status
        status, body, _ = _get(f"{base}/api/contents/{NOTEBOOK}?token={token}")
        assert status == 200, status
        model = json.loads(body)
        assert model["type"] == "notebook" and model["content"]["cells"], model["name"]

        # 3. without the token: refused
        status, _, _ = _get(f"{base}/api/contents/{NOTEBOOK}")
        assert status == 403, status
        status, _, headers = _get(f"{base}/lab/tree/{NOTEBOOK}")
        assert status == 302 and "/login" in headers.get("Location", ""), (status, headers)
        status, _, _ = _get(f"{base}/api/contents/{NOTEBOOK}?token=wrong{token}")
        assert status == 403, status

        # 4. it listens on loopback only
        server = next(
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "jupyterlab" in p.cmdline()
        )
        listening = [c for c in server.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening), listening

        # 5. a kernel, so that stopping has something to stop
        req = urllib.request.Request(
            f"{base}/api/kernels?token={token}", data=b"{}", method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 201
        time.sleep(1.0)
        for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
            started[p.pid] = p.create_time()
        assert any("ipykernel" in " ".join(psutil.Process(p).cmdline()) for p in started)
    finally:
        _stop_like_ctrl_c(proc)
        out.thread.join(10)

    # 6. Ctrl-C stops the server and everything it started
    assert "Stopping JupyterLab and its kernels" in out.text()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(started):
        time.sleep(0.2)
    assert not _alive(started), f"left running after Ctrl-C: {_alive(started)}"


def _alive(seen: dict[int, float]) -> list[str]:
    alive = []
    for pid, created in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(p.cmdline())[:100]}")
        except psutil.NoSuchProcess:
            pass
    return alive
