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


#: Where each notebook's experiment setup lives; the notebook and its report section
#: both import it from there.
SETUP_SOURCES = {
    "00": "mbviz.course.warmup",
    "01": "mbviz.course.setups",
    "02": "mbviz.course.setups",
    "03": "mbviz.course.setups",
    "04": "mbviz.course.setups",
    "05": "mbviz.course.setups",
    "06": "mbviz.course.traffic",
    "07": "mbviz.course.setups",
}


@pytest.mark.parametrize("key", sorted(SETUP_SOURCES))
def test_a_notebook_takes_its_setup_from_the_library(key: str) -> None:
    nb = syllabus.notebook(key)
    source = (ROOT / "notebooks" / nb.file).read_text()
    assert f"from {SETUP_SOURCES[key]} import" in source, nb.file


def test_the_report_sections_take_their_setups_from_the_same_modules() -> None:
    sections = (ROOT / "mbviz" / "course" / "sections.py").read_text()
    for module in set(SETUP_SOURCES.values()):
        name = module.rsplit(".", 1)[1]
        assert f"from .{name} import" in sections or f"from . import {name}" in sections, module
