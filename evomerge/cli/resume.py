"""``evomerge resume RUN_DIR``: continue a stopped run exactly where its checkpoint and log leave off."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a stopped or killed run", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evomerge.runs.api import resume
    from evomerge.runs.summary import format_status

    status = resume(args.run_dir)
    print(format_status(status))
    return 0
