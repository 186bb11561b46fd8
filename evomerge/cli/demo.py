"""``evomerge demo``: build the toy world (cached), search a merge, print where the report is."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="end-to-end demo on the embedded toy world (a few CPU minutes)", description=__doc__
    )
    p.add_argument("--run-dir", metavar="DIR", help="where the demo run writes (default: runs/demo-<time>)")
    p.add_argument("--preset", default="demo", choices=["demo", "test"], help=argparse.SUPPRESS)
    p.add_argument("--max-evals", type=int, metavar="N", help=argparse.SUPPRESS)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evomerge.demo import run_demo

    report_path = run_demo(args.run_dir, preset=args.preset, max_evals=args.max_evals)
    print(f"report: {report_path}")
    return 0
