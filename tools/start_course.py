"""Start JupyterLab on the course: what ``make course`` runs.

    python tools/start_course.py                  # notebooks/00_start_here.ipynb
    python tools/start_course.py --port 9000 --no-browser

The server listens on 127.0.0.1 only and asks for a token; this script has no option to
change either. It works the same for every newcomer:

- as root (containers, cloud notebooks, CI runners) it passes ``--allow-root`` and says so;
- on a machine without a display it opens no browser;
- when the port (8888 by default) is taken, JupyterLab takes the next free one.

When the server answers, the last line printed is the notebook's URL with its token. Ctrl-C
(or SIGTERM) stops the server and its kernels. Only the standard library is used here, so the
script runs in any Python that has JupyterLab installed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/00_start_here.ipynb"
HOST = "127.0.0.1"
DEFAULT_PORT = 8888
#: How many ports above the requested one JupyterLab tries when it is taken.
PORT_RETRIES = 50


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def has_display(environ: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """Whether a browser window can open: always on macOS and Windows; on Linux and the
    BSDs only under X11 or Wayland (an SSH session or a container has neither)."""
    env = os.environ if environ is None else environ
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def lab_command(*, port: int, token: str, root: bool, open_browser: bool) -> list[str]:
    """The ``jupyter lab`` command line. Loopback and a token are fixed here: command-line
    options override any configuration file, so nothing a user configured widens them."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        NOTEBOOK,
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        f"--ServerApp.port_retries={PORT_RETRIES}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
    ]
    if root:
        cmd.append("--allow-root")
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def _server_info(runtime_dir: Path, pid: int) -> dict[str, object] | None:
    """What JupyterLab wrote about itself once it listens (``jpserver-<pid>.json``)."""
    path = runtime_dir / f"jpserver-{pid}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None  # not written yet, or half written


def _answers(port: int, token: str) -> bool:
    req = urllib.request.Request(
        f"http://{HOST}:{port}/api/status", headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_until_served(
    proc: subprocess.Popen[bytes], runtime_dir: Path, token: str, timeout: float
) -> int:
    """The port the server listens on, once ``/api/status`` answers there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode} (its log is above)")
        info = _server_info(runtime_dir, proc.pid)
        if info is not None and _answers(int(str(info["port"])), token):
            return int(str(info["port"]))
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer on {HOST} within {timeout:.0f} s")


class _Forward:
    """Copies the server's output to ours line by line, and knows when it last spoke."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.last = time.monotonic()
        assert proc.stdout is not None
        self._stream = proc.stdout
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in iter(self._stream.readline, b""):
            sys.stdout.write(line.decode(errors="replace"))
            sys.stdout.flush()
            self.last = time.monotonic()

    def wait_quiet(self, quiet: float = 1.0, at_most: float = 10.0) -> None:
        """Return once the server has printed nothing for ``quiet`` seconds (or after
        ``at_most``): its start-up lines end a moment after it starts answering."""
        deadline = time.monotonic() + at_most
        while time.monotonic() < deadline and time.monotonic() - self.last < quiet:
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM: JupyterLab shuts its kernels down and exits; whatever is left of its process
    group (it runs in a session of its own) is killed after ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("MBK_COURSE_PORT", DEFAULT_PORT)),
        help=f"first port to try, 1..65535 (default {DEFAULT_PORT}; the next free one is taken)",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open a browser (automatic without one)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the server (default 120)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in 1..65535, got {args.port}")

    root = is_root()
    open_browser = not args.no_browser and has_display()
    token = secrets.token_hex(24)
    # a private runtime folder: the server's info file (port, pid) is found without guessing
    runtime = tempfile.TemporaryDirectory(prefix="mbk-course-")
    runtime_dir = Path(runtime.name)
    if root:
        print(
            "Running as root (a container, CI or cloud machine): passing --allow-root.", flush=True
        )
    proc = subprocess.Popen(
        lab_command(
            port=args.port,
            token=token,
            root=root,
            open_browser=open_browser,
        ),
        cwd=ROOT,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime_dir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,  # forwarded line by line, so the URL can come out last
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches this script, which stops the server cleanly
    )
    log = _Forward(proc)

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        port = wait_until_served(proc, runtime_dir, token, args.timeout)
        url = f"http://{HOST}:{port}/lab/tree/{NOTEBOOK}?token={token}"
        log.wait_quiet()  # JupyterLab's own start-up lines come out first
        if port != args.port:
            print(f"Port {args.port} is taken; JupyterLab chose port {port}.")
        if open_browser:
            print("A browser tab opens on the course. Ctrl-C here stops the server.")
        else:
            print(
                "No display here, so no browser opens. From another machine: "
                f"ssh -N -L {port}:{HOST}:{port} USER@THIS-HOST, then open the URL below. "
                "Ctrl-C here stops the server."
            )
        print(f"The course is served at:\n    {url}", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("\nStopping JupyterLab and its kernels...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(proc)
        runtime.cleanup()


if __name__ == "__main__":
    sys.exit(main())
