"""The Python blocks of docs/rules.md run as written."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index: int) -> None:
    exec(compile(BLOCKS[index], f"{DOC.name}[{index}]", "exec"), {"__name__": "__doc__"})


def test_readme_method_table_names_every_rule_and_weighting() -> None:
    """The README's table of methods marks every registered rule and loss weighting, and
    every name it marks is registered."""
    import mbkernels as mbk

    readme = (DOC.parents[1] / "README.md").read_text()
    start = readme.index("| method | paper | ours | LibMTL | TorchJD | backward passes |")
    rows = list(
        itertools.takewhile(lambda line: line.startswith("| "), readme[start:].splitlines())
    )
    rows = rows[2:]  # past the header and the rule
    ours = [row.split("|")[3] for row in rows]
    marked = {name for cell in ours if "✓" in cell for name in re.findall(r"`([a-z_]+)`", cell)}
    registered = set(mbk.RULES) | set(mbk.WEIGHTINGS)
    assert registered <= marked, sorted(registered - marked)
    assert marked <= registered, sorted(marked - registered)
    assert len(rows) >= 35
