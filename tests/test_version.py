"""The version is written once, in mbkernels; the distribution and mbviz read it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import mbkernels
import mbviz

ROOT = Path(__file__).resolve().parents[1]


def test_mbviz_has_mbkernels_version() -> None:
    assert mbviz.__version__ == mbkernels.__version__
    assert "__version__" in dir(mbviz)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_pyproject_reads_the_version_from_mbkernels() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mbkernels.__version__"}
