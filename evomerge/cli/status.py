"""``evomerge status RUN_DIR``: progress, best so far (and its held-out score), Pareto size, speed."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show a run's progress and best candidate", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--validate",
        action="store_true",
        help="score the best candidate on the held-out split now (loads the models) and cache it",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evomerge.runs.store import RunStore, to_jsonable
    from evomerge.runs.summary import format_status, summarize

    store = RunStore(args.run_dir)
    store.require()
    if args.validate:
        from evomerge.runs.api import validate_best

        validate_best(args.run_dir)
    s = summarize(store)
    if args.json:
        print(json.dumps(to_jsonable(s), sort_keys=True))
    else:
        print(format_status(s))
    return 0
