"""One map of the course: the syllabus lists the notebooks; the report's sections follow it
and take their titles and files from it; the report depends on the course, not back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mbviz.course import syllabus
from mbviz.course.section import Section
from mbviz.course.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_is_in_the_syllabus_once_in_order() -> None:
    files = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [n.file for n in syllabus.NOTEBOOKS] == files
    assert len({n.key for n in syllabus.NOTEBOOKS}) == len(files)


def test_the_sections_follow_the_syllabus() -> None:
    order = [n.key for n in syllabus.NOTEBOOKS]
    keys = [k for k, _ in SECTIONS]
    assert keys == sorted(keys, key=order.index)


def test_a_section_takes_its_title_and_file_from_the_syllabus() -> None:
    s = Section.of("03", "text", [])
    nb = syllabus.notebook("03")
    assert (s.key, s.title, s.notebook, s.tables) == ("03", nb.title, nb.file, [])
    with pytest.raises(ValueError, match="key must be one of '00'"):
        syllabus.notebook("99")


def test_the_course_package_does_not_import_the_report() -> None:
    for path in (ROOT / "mbviz" / "course").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("report", "mbviz.report"), path.name
