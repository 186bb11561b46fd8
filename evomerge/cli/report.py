"""``evomerge report RUN_DIR``: PNG figures and one self-contained HTML page in RUN_DIR/report/."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="draw a run's figures and HTML report", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--compare", nargs="*", default=[], metavar="DIR", help="other runs to overlay (one curve per run)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evomerge.report import report

    print(report(args.run_dir, compare=args.compare))
    return 0
