"""``python -m mbviz report``: one self-contained HTML file with every section's figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mbviz import cli
from mbviz.course.sections import SECTIONS
from mbviz.report import render_html, run_sections, write_report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    assert cli.main(["report", "-o", str(path), "--size", "1"]) == 0
    return path, path.read_text(encoding="utf-8")


def test_report_is_self_contained(report: tuple[Path, str]) -> None:
    _, text = report
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count("* plotly.js v") == 1, "plotly.js must be inlined exactly once"
    assert not re.search(r"<script[^>]*\bsrc=", text), "no external scripts: it must open offline"


def test_report_has_every_section_with_its_figures(report: tuple[Path, str]) -> None:
    _, text = report
    sections = run_sections(SECTIONS[:1], size=1, progress=None)  # titles/figure counts
    assert sections[0].title in text
    for key, _ in SECTIONS:
        assert f'<section id="s{key}">' in text, f"section {key} missing"
    n_sections = text.count("<section ")
    n_figures = text.count("Plotly.newPlot(")
    assert n_sections == len(SECTIONS) and n_figures >= n_sections, (n_sections, n_figures)
    assert text.count("<table") >= 1
    assert "experiment ran in" in text


def test_figures_have_titled_axes(report: tuple[Path, str]) -> None:
    for section in run_sections(SECTIONS, size=1, progress=None):
        assert section.figures, f"section {section.key} has no figure"
        for fig in section.figures:
            assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text, section.key
            assert len(fig.data) >= 1, section.key


def test_render_counts_each_figure_once() -> None:
    sections = run_sections(SECTIONS[:1], size=1, progress=None)
    text = render_html(sections)
    assert text.count("Plotly.newPlot(") == len(sections[0].figures)


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
