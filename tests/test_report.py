"""``python -m mbviz report``: one self-contained HTML file with every section's figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mbviz import cli
from mbviz.course.sections import SECTIONS
from mbviz.report import Section, render_html, run_sections, write_report


@pytest.fixture(scope="module")
def sections() -> list[Section]:
    """Every section's experiment, run once for the module (classroom size)."""
    return run_sections(SECTIONS, size=1, progress=None)


@pytest.fixture(scope="module")
def text(sections: list[Section]) -> str:
    return render_html(sections, size=1)


def test_report_is_self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count("* plotly.js v") == 1, "plotly.js must be inlined exactly once"
    assert not re.search(r"<script[^>]*\bsrc=", text), "no external scripts: it must open offline"


def test_report_has_every_section_with_its_figures(sections: list[Section], text: str) -> None:
    assert [s.key for s in sections] == [k for k, _ in SECTIONS]
    for s in sections:
        assert f'<section id="s{s.key}">' in text, f"section {s.key} missing"
        assert s.title in text and s.notebook in text
        assert (Path(__file__).parents[1] / "notebooks" / s.notebook).exists(), s.notebook
    assert text.count("Plotly.newPlot(") == sum(len(s.figures) for s in sections)
    assert text.count("<table") == sum(len(s.tables) for s in sections)
    assert "experiment ran in" in text


def test_figures_have_titled_axes_and_data(sections: list[Section]) -> None:
    for section in sections:
        assert section.figures, f"section {section.key} has no figure"
        for fig in section.figures:
            assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text, section.key
            assert len(fig.data) >= 1, section.key


def test_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "report.html"
    assert cli.main(["report", "-o", str(out), "--only", "00"]) == 0
    html = out.read_text(encoding="utf-8")
    assert '<section id="s00">' in html and '<section id="s06">' not in html
    assert "wrote" in capsys.readouterr().out


def test_bad_arguments_name_the_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="size"):
        write_report(tmp_path / "r.html", size=0)
    with pytest.raises(ValueError, match="only"):
        write_report(tmp_path / "r.html", only=["99"])
    assert cli.main(["report", "-o", str(tmp_path / "r.html"), "--only", "42"]) == 2
    assert "only" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists(), "nothing is written on bad input"
