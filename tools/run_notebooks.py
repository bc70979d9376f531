"""Execute the course notebooks one after the other and print how long each takes.

    python tools/run_notebooks.py                    # every notebooks/NN_*.ipynb
    python tools/run_notebooks.py notebooks/03_*.ipynb --json times.json

Nothing is written back into the notebooks (they are stored without outputs).
A notebook that fails is reported with the cell that raised; the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def run(path: Path, timeout: int = 600) -> tuple[float, str | None]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={
        "metadata": {"path": str(path.parent)}})  # fmt: skip
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        return time.perf_counter() - start, str(exc).splitlines()[-1]
    return time.perf_counter() - start, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--json", type=Path, help="also write {notebook: seconds} here")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    times, failed = {}, False
    for path in paths:
        seconds, error = run(path)
        times[path.name] = round(seconds, 1)
        print(f"{path.name:48s} {seconds:6.1f} s" + (f"  FAILED: {error}" if error else ""))
        failed |= error is not None
    if args.json:
        args.json.write_text(json.dumps(times, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
