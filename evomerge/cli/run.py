"""``evomerge run CONFIG.yaml``: start a search; the run directory then holds everything."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start a search from a run config", description=__doc__)
    p.add_argument("config", metavar="CONFIG.yaml", help="run config (see experiments/ for examples)")
    p.add_argument("--run-dir", metavar="DIR", help="where the run writes (default: runs/<config name>-<time>)")
    p.add_argument("--backend", choices=["inprocess", "ray"], help="override evaluator.backend")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--max-evals", type=int, metavar="N", help="override budget.max_evals")
    p.add_argument("--time-limit", metavar="T", help="override budget.time_limit (seconds, or 90m, 2h)")
    p.add_argument("--seed", type=int, metavar="S", help="override run.seed")
    p.set_defaults(func=main)


def default_run_dir(config_path: str) -> Path:
    import time

    return Path("runs") / f"{Path(config_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def main(args: argparse.Namespace) -> int:
    from evomerge.config import load_config, with_overrides
    from evomerge.runs.api import run
    from evomerge.runs.summary import format_status

    cfg = load_config(args.config)
    cfg = with_overrides(
        cfg,
        max_evals=args.max_evals,
        time_limit=args.time_limit,
        seed=args.seed,
        backend=args.backend,
        address=args.address,
    )
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.config)
    status = run(cfg, run_dir, config_path=args.config)
    print(format_status(status))
    print(f"run directory: {run_dir}")
    return 0
