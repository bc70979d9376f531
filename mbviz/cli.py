"""``python -m mbviz``: command-line entry with one subcommand per task.

    python -m mbviz report -o report.html [--size 1] [--only 00 06]
    python -m mbviz compare [--rules equal multibalance mgda_ub] [--seeds 0 1 2]
    python -m mbviz study imbalance|tuning|sparse|select --problem movielens|wage|synthetic

New subcommands register in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    out = write_report(args.output, size=args.size, only=args.only)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mbviz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="run the course's experiments, write one HTML report")
    rep.add_argument("-o", "--output", default="report.html", help="default: report.html")
    rep.add_argument("--size", type=int, default=1, help="the notebooks' SIZE, 1..100 (default 1)")
    rep.add_argument("--only", nargs="+", metavar="NN", help="only these sections (e.g. 00 06)")
    rep.set_defaults(func=_report)
    from .experiments import add_parser as _add_compare

    _add_compare(sub)
    from .study import add_parser as _add_study

    _add_study(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # invalid --size / --task ...: a one-line error, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
