"""Headless Chromium for the end-to-end tests: Debian's ``chromium`` driven by Playwright.

No browser is downloaded: Playwright starts the system binary (``/usr/bin/chromium``, or
``MBK_E2E_CHROMIUM``) with flags that keep it off the network and out of the user's profile.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Where Debian's ``chromium`` package puts the browser; ``MBK_E2E_CHROMIUM`` overrides.
DEFAULT_CHROMIUM = "/usr/bin/chromium"

#: Headless, no sandbox (CI runs as root), no GPU, and no background traffic: this machine
#: has no network, and Chromium's own update, sync and QUIC probes would only be refused.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

#: What a fresh machine needs (``.ci/run`` installs it).
INSTALL_HINT = "install Debian's browser: apt-get install -y chromium (see docs/e2e.md)"


def in_ci() -> bool:
    """True where the environment says CI (``CI=true``): a missing browser is then a failure."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def find_chromium() -> Path | None:
    """The Chromium binary to drive, or ``None`` if there is none."""
    wanted = os.environ.get("MBK_E2E_CHROMIUM", DEFAULT_CHROMIUM)
    path = Path(wanted)
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def launch_args() -> list[str]:
    """Chromium's command-line flags. The fresh profile folder (``--user-data-dir``) is
    passed by Playwright's ``launch_persistent_context``, which refuses it among the flags."""
    return list(CHROMIUM_FLAGS)
