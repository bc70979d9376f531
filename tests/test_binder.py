"""binder/: the configuration repo2docker turns into the course's CPU environment.

Fast checks: the pins are complete, exact and satisfy pyproject.toml. The slow
``binder`` test builds the environment the way repo2docker does (a fresh
Python 3.11 environment, ``pip install -r binder/requirements.txt``, then
``binder/postBuild`` from the repository root) in a fresh venv from a copy of
the repository, and executes every notebook there with nbval. Skip it with
``-m "not binder"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
if sys.version_info < (3, 11):  # tools/binder_lock.py reads pyproject.toml with tomllib
    pytest.skip("Binder's environment is Python 3.11", allow_module_level=True)
sys.path.insert(0, str(ROOT / "tools"))
from binder_lock import project_requirements  # noqa: E402


def _pins() -> dict[str, str]:
    pins = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "--")):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"not an exact pin: {line!r}"
        pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def test_runtime_and_post_build() -> None:
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "repo2docker runs postBuild only if it is executable"
    assert "pip install --no-deps -e ." in post_build.read_text()


def test_every_course_requirement_is_pinned_and_satisfied() -> None:
    pins = _pins()
    for req in project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a course requirement but not pinned in binder/"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"binder pins {req.name}=={pins[name]}, pyproject asks for {req}; "
            "run `python tools/binder_lock.py`"
        )


def test_torch_is_the_cpu_build() -> None:
    text = (BINDER / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text.splitlines()
    assert _pins()["torch"].endswith("+cpu")
    assert not any(name.startswith("nvidia-") for name in _pins()), "CUDA libraries pinned"


def _copy_checkout(dest: Path) -> None:
    """What a clone contains: tracked files and untracked ones git does not ignore."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str, timeout: int = 900) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    log = "\n".join(l for l in (proc.stdout + proc.stderr).splitlines() if "is ignored" not in l)
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{log[-4000:]}"


@pytest.mark.binder
@pytest.mark.slow
def test_binder_environment_runs_the_course(tmp_path: Path) -> None:
    if sys.version_info[:2] != (3, 11):
        pytest.skip("binder/runtime.txt asks for Python 3.11; this interpreter differs")
    repo, venv = tmp_path / "repo", tmp_path / "venv"
    _copy_checkout(repo)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(venv),
        # Where the PyTorch CPU index cannot be reached (offline CI), fail over fast to the
        # other configured indexes instead of retrying for minutes.
        PIP_RETRIES="0",
        PIP_TIMEOUT="15",
        PIP_DEFAULT_TIMEOUT="15",
    )
    python = str(venv / "bin" / "python")
    # 1. What repo2docker does for a requirements.txt + postBuild repository.
    _run([python, "-m", "pip", "install", "-r", "binder/requirements.txt"], repo, env, "pip")
    _run(["bash", "binder/postBuild"], repo, env, "binder/postBuild")
    # 2. The test tools only (not part of the Binder image), at the versions used here.
    from importlib.metadata import version

    tools = [f"{name}=={version(name)}" for name in ("pytest", "nbval", "pytest-xdist")]
    _run([python, "-m", "pip", "install", *tools], repo, env, "installing the test tools")
    # 3. Every notebook, top to bottom, in that environment (its kernel, its packages). The
    # rest of the suite waits for this test, so the notebooks use two cores: each one on
    # one worker (loadfile), its cells in order in one kernel.
    workers = str(min(2, os.cpu_count() or 1))
    _run(
        [python, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
         "-n", workers, "--dist", "loadfile",
         "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=300", "notebooks"],
        repo, env, "nbval in the Binder environment",
    )  # fmt: skip
    # The kernel imported the copy's packages, not this checkout's.
    probe = subprocess.run(
        [python, "-c", "import mbkernels, mbviz; print(mbkernels.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(probe.stdout.strip()).is_relative_to(repo)
