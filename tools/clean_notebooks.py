"""Strip outputs, execution counts and per-run metadata from the course notebooks.

The notebooks are stored without outputs (see README, "The course"): diffs stay
reviewable and nbval re-executes every cell anyway. Run this before committing
a notebook you saved from JupyterLab::

    python tools/clean_notebooks.py            # rewrite notebooks/*.ipynb in place
    python tools/clean_notebooks.py --check    # exit 1 and list the files that need it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
#: Notebook-level metadata we keep; everything else (widget state, timings) is dropped.
KEEP_METADATA = ("kernelspec", "language_info")


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return ``nb`` without outputs, execution counts or volatile metadata."""
    nb.metadata = {k: nb.metadata[k] for k in KEEP_METADATA if k in nb.metadata}
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": nb.metadata["language_info"].get("name", "python")}
    for cell in nb.cells:
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def serialise(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        text = path.read_text()
        cleaned = serialise(clean(nbformat.reads(text, as_version=4)))
        if cleaned != text:
            dirty.append(path)
            if not args.check:
                path.write_text(cleaned)
    for path in dirty:
        print(("needs cleaning: " if args.check else "cleaned: ") + str(path))
    return 1 if (dirty and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
