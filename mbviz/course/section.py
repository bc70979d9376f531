"""What one section of the headless course report holds: one notebook's experiment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .syllabus import notebook


@dataclass
class Section:
    """One part of the report: what a notebook's experiment produced."""

    key: str  # the notebook's number, e.g. "00" (:attr:`mbviz.course.syllabus.Notebook.key`)
    title: str
    notebook: str
    text: str  # a paragraph or two, plain text (escaped when written)
    figures: list[Any] = field(default_factory=list)  # plotly go.Figure
    tables: list[Any] = field(default_factory=list)  # pandas DataFrames
    seconds: float = 0.0

    @classmethod
    def of(
        cls, key: str, text: str, figures: list[Any], tables: list[Any] | None = None
    ) -> Section:
        """The section of notebook ``key``, its title and file taken from the syllabus."""
        nb = notebook(key)
        return cls(key, nb.title, nb.file, text, figures, tables or [])


SectionFn = Callable[[int], Section]
