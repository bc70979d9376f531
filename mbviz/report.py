"""The headless course report: one self-contained HTML file with the course's figures.

For people without Jupyter and for CI: ``python -m mbviz report -o report.html``
runs each notebook's experiment at small size (the sections live in
:mod:`mbviz.course.sections`) and writes one HTML page. plotly.js is inlined once
in the page's head, so the file opens offline and needs no CDN.
"""

from __future__ import annotations

import html
import platform
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from mbkernels.validation import check_int

from ._deps import require
from .course.section import Section, SectionFn

__all__ = ["Section", "SectionFn", "render_html", "run_sections", "write_report"]


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta, .timing { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
"""


def run_sections(
    sections: Sequence[tuple[str, SectionFn]],
    size: int = 1,
    progress: Callable[[str], None] | None = print,
) -> list[Section]:
    """Run each section's experiment at ``size``; time each one."""
    check_int("size", size, low=1, high=100)
    done = []
    for key, fn in sections:
        if progress is not None:
            progress(f"[report] {key} ...")
        start = time.perf_counter()
        section = fn(size)
        section.seconds = time.perf_counter() - start
        done.append(section)
        if progress is not None:
            progress(f"[report] {key} done in {section.seconds:.1f} s")
    return done


def render_html(sections: Sequence[Section], *, size: int = 1) -> str:
    """One HTML page; plotly.js inline exactly once, every figure a ``div`` + script."""
    plotly_offline = require("plotly.offline")

    import mbkernels

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>MultiBalance Lab: course report</title>",
        f"<style>{_STYLE}</style>",
        f'<script type="text/javascript">{plotly_offline.get_plotlyjs()}</script>',
        "</head><body>",
        "<h1>MultiBalance Lab: course report</h1>",
        '<p class="meta">'
        + html.escape(
            f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python -m mbviz "
            f"report` with SIZE={size}; mbkernels {mbkernels.__version__}, Python "
            f"{platform.python_version()} on {platform.machine()}. Each section reruns the "
            "experiment of one course notebook at small size; open the notebook to explore."
        )
        + "</p>",
        "<ul>"
        + "".join(
            f'<li><a href="#s{s.key}">{s.key} · {html.escape(s.title)}</a></li>' for s in sections
        )
        + "</ul>",
    ]
    for s in sections:
        parts.append(f'<section id="s{s.key}"><h2>{s.key} · {html.escape(s.title)}</h2>')
        parts.append(
            f'<p class="timing">notebook <code>notebooks/{html.escape(s.notebook)}</code>; '
            f"experiment ran in {s.seconds:.1f} s</p>"
        )
        parts.extend(f"<p>{html.escape(p)}</p>" for p in s.text.split("\n\n") if p.strip())
        for table in s.tables:
            parts.append(table.to_html(float_format=lambda x: f"{x:.4g}", border=0))
        for fig in s.figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    path: str | Path,
    size: int = 1,
    only: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Run the course's experiments and write the report to ``path``; return the path."""
    from .course.sections import SECTIONS

    keys = [k for k, _ in SECTIONS]
    if only:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise ValueError(f"only must name sections among {keys}, got unknown {unknown}")
    chosen = [(k, fn) for k, fn in SECTIONS if not only or k in only]
    sections = run_sections(chosen, size=size, progress=progress)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(sections, size=size), encoding="utf-8")
    return out
