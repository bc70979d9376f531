"""A JupyterLab server on loopback for the end-to-end tests: start, wait, stop everything.

The server runs with a random token on a free 127.0.0.1 port, in a private configuration,
data, runtime, settings and workspaces folder, so nothing the developer has configured (or
saved last time) changes what the test sees, and nothing the test does is saved back.
On :meth:`LabServer.stop` the server and every process it started (kernels) are gone.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

#: JupyterLab settings written into the private user-settings folder. Windowing off, so
#: every cell (and its figures) is in the DOM; autosave off, so the test never writes back;
#: no news pop-up, no "checkpoint" prompts.
LAB_SETTINGS: dict[str, dict[str, object]] = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

#: Front-end plugins switched off for the tests: the news prompt would cover the notebook.
DISABLED_PLUGINS = ("@jupyterlab/apputils-extension:announcements",)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LabServer:
    """One ``jupyter lab`` process serving ``root_dir``; use :meth:`start` and :meth:`stop`."""

    root_dir: Path
    state_dir: Path
    startup_timeout: float = 120.0
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: Every process seen under the server (itself, kernels): pid -> create time.
    seen: dict[int, float] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """``path`` (e.g. ``lab/tree/x.ipynb``) on this server, with the token."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def _write_private_config(self) -> dict[str, str]:
        dirs = {
            name: self.state_dir / name
            for name in ("config", "data", "runtime", "settings", "workspaces")
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for plugin, values in LAB_SETTINGS.items():
            target = dirs["settings"] / f"{plugin}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        labconfig = dirs["config"] / "labconfig"
        labconfig.mkdir(exist_ok=True)
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": dict.fromkeys(DISABLED_PLUGINS, True)})
        )
        return {k: str(v) for k, v in dirs.items()}

    def command(self, dirs: dict[str, str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.terminals_enabled=False",
            "--ServerApp.allow_root=True",  # CI runs as root
            "--ServerApp.open_browser=False",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={dirs['settings']}",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
            "--LabApp.news_url=",
        ]

    def start(self) -> LabServer:
        """Start the server and wait until ``/api/status`` answers; raise with its log if not."""
        dirs = self._write_private_config()
        self.port = self.port or free_port()
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=dirs["config"],
            JUPYTER_DATA_DIR=dirs["data"],
            JUPYTER_RUNTIME_DIR=dirs["runtime"],
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(self.state_dir / "ipython"),
            # the kernel must not try to reach anything, and must not buffer its output
            PYTHONUNBUFFERED="1",
        )
        env.pop("JUPYTER_PATH", None)
        self.log_path = self.state_dir / "jupyter-lab.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(dirs),
            cwd=self.root_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() can end all of it
        )
        log.close()
        _remember(self.seen, [psutil.Process(self.process.pid)])
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.api("status", quiet=True) is not None:
                return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(
            f"jupyter lab did not answer on {self.base_url} within {self.startup_timeout:.0f}"
            f" s:\n{self.log_tail()}"
        )

    def api(
        self, path: str, *, method: str = "GET", body: object = None, quiet: bool = False
    ) -> Any:
        """``/api/<path>`` as JSON (``None`` on a connection error when ``quiet``)."""
        req = urllib.request.Request(
            f"{self.base_url}/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if quiet:
                return None
            raise

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the server runs (between notebooks, to free memory)."""
        for kernel in self.api("kernels") or []:
            req = urllib.request.Request(
                f"{self.base_url}/api/kernels/{kernel['id']}",
                method="DELETE",
                headers={"Authorization": f"token {self.token}"},
            )
            try:
                urllib.request.urlopen(req, timeout=30).close()
            except urllib.error.HTTPError as exc:  # already gone
                if exc.code != 404:
                    raise

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-chars:]

    def descendants(self) -> list[psutil.Process]:
        """The server's live child processes (kernels), recorded in :attr:`seen`."""
        if self.process is None:
            return []
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        _remember(self.seen, children)
        return children

    def stop(self, timeout: float = 20.0) -> None:
        """Shut the server down (kernels first), then end whatever is left of its group."""
        if self.process is None:
            return
        children = self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # jupyter shuts its kernels down, exits
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        procs = [p for p in children if p.is_running()]
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)

    def alive_pids(self) -> list[int]:
        """Those of :attr:`seen` still running."""
        return still_running(self.seen)


def _remember(seen: dict[int, float], procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            seen.setdefault(p.pid, p.create_time())
        except psutil.NoSuchProcess:
            pass


def still_running(seen: dict[int, float]) -> list[int]:
    """The pids of ``seen`` (pid -> create time) that still run: same pid, same start, not a
    zombie (a reused pid is another process and does not count)."""
    alive = []
    for pid, created in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive
