"""``evomerge resume RUN_DIR``: continue a stopped or killed run exactly where its checkpoint and log leave off.

``resume`` refuses, in one line and with exit status 2, a run whose config.yaml or models changed
since it started (method, ranges, models, scorer, seed, dtype, …: anything but the budget and how
the search is run — the evaluator's backend, device, address, workers, GPUs/CPUs per worker, time
limits and attempts, run.max_attempts, the checkpoint cadence, the failure breaker, the
description). Raising ``budget.max_evals`` or ``budget.time_limit`` in config.yaml is how a run is
extended and needs no flag.

``--allow-config-change`` continues anyway: the log then holds results of two configs (scores
before and after may not be comparable; the best candidate and the Pareto front are taken over
both), the driver continues from its checkpointed state under the new settings (a different
driver, genome size or number of objectives cannot be continued at all), and meta.json records the
new config as the run's, keeping the old one's hashes in ``fingerprint_history``. Exit status as
for ``evomerge run``.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resume",
        help="continue a stopped or killed run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="continue although config.yaml or the models changed since the run started (see above)",
    )
    p.add_argument(
        "--eval-timeout",
        type=float,
        metavar="SECONDS",
        help="evaluator.timeout for this resume: a longer evaluation is failed (the run goes on)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evomerge.runs.api import resume
    from evomerge.runs.summary import format_status, outcome

    overrides = {"eval_timeout": args.eval_timeout} if args.eval_timeout is not None else None
    status = resume(args.run_dir, allow_config_change=args.allow_config_change, overrides=overrides)
    print(format_status(status))
    code, line = outcome(status)
    if line:
        print(line, file=sys.stderr)
    return code
