"""The wheel a training job installs carries no benchmark code and no allocator tuning, and
what it carries (the course and its report included) imports nothing from outside it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import setuptools

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: Code that changes the C allocator of the process (benchmarks/malloc.py).
ALLOCATOR = re.compile(r"mallopt|M_MMAP_THRESHOLD|M_TRIM_THRESHOLD|ctypes")
IMPORTS_BENCHMARKS = re.compile(r"^\s*(from|import)\s+benchmarks\b", re.MULTILINE)
#: TorchRec is an optional engine the repository-only examples/ use; the wheel never imports it.
IMPORTS_TORCHREC = re.compile(r"^\s*(from|import)\s+(torchrec|fbgemm_gpu|examples)\b", re.M)
#: Directories that are never part of the project's sources.
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "node_modules"
)


def _packages() -> list[str]:
    """The packages of the wheel, found as pyproject.toml configures setuptools to."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    return sorted(setuptools.find_packages(where=str(ROOT), include=find["include"]))


def _check(names: list[str], read: dict[str, str]) -> None:
    outside = ("benchmarks", "examples", "tests", "tools")
    assert not [n for n in names if n.split("/")[0] in outside], names
    for name, text in read.items():
        assert not ALLOCATOR.search(text), f"{name} tunes the allocator"
        assert not IMPORTS_BENCHMARKS.search(text), f"{name} imports the benchmarks"
        assert not IMPORTS_TORCHREC.search(text), f"{name} imports torchrec or examples/"


def test_packaged_modules_hold_no_benchmarks_and_no_allocator_tuning() -> None:
    packages = _packages()
    assert {"mbkernels", "mbviz", "mbviz.course"} <= set(packages)
    files = [
        p.relative_to(ROOT).as_posix()
        for pkg in packages
        for p in (ROOT / pkg.replace(".", "/")).glob("*.py")
    ]
    _check(files, {f: (ROOT / f).read_text() for f in files})


def test_built_wheel_holds_no_benchmarks_and_no_allocator_tuning(tmp_path: Path) -> None:
    """The wheel itself, built offline from a copy of the sources (about 3 s)."""
    pytest.importorskip("setuptools", minversion="77")  # the build backend pyproject names
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheel_dir)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = wheel_dir.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        py = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    assert "mbviz/dlrm_throughput.py" in names and "mbviz/course/sections.py" in names
    _check(names, py)
