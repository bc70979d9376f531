"""Everything outside :mod:`mbkernels` uses only its public names.

A name is private when it, or a module on its import path, starts with one underscore
(``mbkernels._device``, ``from mbkernels.numerics import _range_safe``). Besides imports,
the check finds the private members of mbkernels' classes (``bal._combine``,
``bal._device_rule = ...``, ``getattr(bal, "_combine")``, ``mock.patch.object(bal,
"_combine")``) used on anything but ``self``/``cls``, and private attributes of a name
bound to an mbkernels module (``mbk._validation``).

Scope: the Python files of ``mbviz/``, ``benchmarks/``, ``examples/``, ``tools/`` and
``mbkernels/examples/`` (the examples are what a training job copies: they are held to the
public API although they sit inside the package), the code cells of
``notebooks/*.ipynb``, ``notebooks/solutions/*.py``, the ``python`` code blocks of
``README.md`` and ``docs/*.md``, and ``tests/`` except :data:`INTERNAL_TESTS`, the unit
tests of internals. The benchmarks are the repository-only package ``benchmarks/``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Unit tests of mbkernels' internals: they test private code directly, by design.
INTERNAL_TESTS = {
    "tests/test_device_path.py": "the GPU device path (mbkernels._device) piece by piece",
    "tests/test_host_path.py": "the CPU host path (mbkernels._host) against the general path",
    "tests/test_state_safety.py": "state untouched by failures injected into private steps",
    "tests/test_ops_triton_real_path.py": "the compiled kernels under the balancer's backward",
    "tests/test_mgda_exact.py": "the simplex solver (mbkernels.rules._simplex) on its own",
    "tests/test_power_system.py": "Nash-MTL's and FairGrad's solver (rules._power_system)",
    "tests/test_ops_triton.py": "the Triton kernels' launch helpers and size checks",
    "tests/test_public_boundary.py": "this check: its examples name private names",
}

#: Files outside the package that still reach inside, each with the reason.
PENDING = {
    "benchmarks/breakdown.py": (
        "times the CPU host path's private passes (mbkernels._host) inside a training step; "
        "a profiler of internals, run from the repository only"
    ),
    "benchmarks/device_path_profile.py": (
        "times the device path's private pieces one by one; a profiler of internals, to "
        "run from the repository only"
    ),
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_members() -> frozenset[str]:
    """The private methods and ``self._x`` attributes of the classes in mbkernels."""
    names: set[str] = set()
    for path in (ROOT / "mbkernels").rglob("*.py"):
        for cls in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(
                    node.name
                ):
                    names.add(node.name)
                elif (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                    and _private(node.attr)
                ):
                    names.add(node.attr)
    return frozenset(names)


MEMBERS = _private_members()
_PATCHERS = {"getattr", "setattr", "hasattr", "delattr", "object"}  # patch.object too


def violations(source: str, members: frozenset[str] = MEMBERS) -> list[tuple[int, str]]:
    """``(line, what)`` for every use of a private mbkernels name in ``source``."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to mbkernels modules
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != "mbkernels":
                    continue
                if any(map(_private, parts)):
                    found.append((node.lineno, f"import {alias.name}"))
                modules.add(alias.asname or "mbkernels")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "mbkernels":
                continue
            for alias in node.names:
                if any(map(_private, parts)) or _private(alias.name):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
                else:
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Name) and base.id in modules:
                found.append((node.lineno, f"{base.id}.{node.attr}"))
            elif node.attr in members:
                found.append((node.lineno, f"._{node.attr.lstrip('_')}"))
        elif isinstance(node, ast.Call):
            fn = node.func
            name = (
                fn.id
                if isinstance(fn, ast.Name)
                else fn.attr
                if isinstance(fn, ast.Attribute)
                else ""
            )
            if name in _PATCHERS and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and arg.value in members:
                    found.append((node.lineno, f"{name}(..., {arg.value!r})"))
    return sorted(found)


def _notebook_source(path: Path) -> str:
    """The code cells, one after another; IPython magics and shell lines blanked (the
    line numbers stay those of the joined cells)."""
    cells = json.loads(path.read_text())["cells"]
    lines: list[str] = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]).splitlines()
        lines += ["" if line.lstrip().startswith(("%", "!")) else line for line in src]
        lines.append("")
    return "\n".join(lines)


_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _markdown_blocks(path: Path) -> Iterator[tuple[int, str]]:
    text = path.read_text()
    for match in _FENCE.finditer(text):
        yield text.count("\n", 0, match.start(1)), match.group(1)


def _sources() -> Iterator[tuple[str, int, str]]:
    """``(path, line offset, source)`` of every piece of code in scope."""
    files: list[Path] = []
    for folder in ("mbviz", "benchmarks", "examples", "tools", "mbkernels/examples", "tests"):
        files += sorted((ROOT / folder).rglob("*.py"))
    files += sorted((ROOT / "notebooks" / "solutions").glob("*.py"))
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel not in INTERNAL_TESTS and rel not in PENDING:
            yield rel, 0, path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        yield path.relative_to(ROOT).as_posix(), 0, _notebook_source(path)
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for offset, block in _markdown_blocks(path):
            yield path.relative_to(ROOT).as_posix(), offset, block


def test_nothing_outside_mbkernels_uses_a_private_mbkernels_name() -> None:
    problems = []
    for rel, offset, source in _sources():
        try:
            found = violations(source)
        except SyntaxError as e:
            problems.append(f"{rel}:{offset + (e.lineno or 0)}: not Python ({e.msg})")
            continue
        problems += [f"{rel}:{offset + line}: {what}" for line, what in found]
    assert not problems, "private mbkernels names used outside the package:\n" + "\n".join(problems)


def test_the_allowlists_name_files_that_exist() -> None:
    for rel in (*INTERNAL_TESTS, *PENDING):
        assert (ROOT / rel).is_file(), rel


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import mbkernels._device", "import mbkernels._device"),
        ("from mbkernels._validation import check_int", "from mbkernels._validation import"),
        ("from mbkernels.numerics import _range_safe", "import _range_safe"),
        ("import mbkernels as mbk\nmbk._host.pass1", "mbk._host"),
        ("bal = make()\nbal._combine([])", "._combine"),
        ("bal = make()\nbal._device_rule = False", "._device_rule"),
        ("mock.patch.object(bal, '_combine', f)", "object(..., '_combine')"),
    ],
)
def test_the_check_finds(source: str, expected: str) -> None:
    found = violations(source)
    assert len(found) == 1 and expected in found[0][1], found


@pytest.mark.parametrize(
    "source",
    [
        "import mbkernels as mbk\nfrom mbkernels.validation import check_int\nmbk.fork",
        "class A:\n    def f(self):\n        return self._combine",
        "import numpy as np\nnp._NoValue",
        "x = obj.__class__",
    ],
)
def test_the_check_passes(source: str) -> None:
    assert violations(source) == []
