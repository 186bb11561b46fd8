"""``evomerge export RUN_DIR``: take a result away as our recipe YAML, mergekit YAML or a HF checkpoint."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the best / Pareto / a given candidate", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--which",
        default="best",
        metavar="best|pareto|ID",
        help="best (default), pareto (every front member) or a candidate id",
    )
    p.add_argument(
        "--format",
        default="recipe",
        choices=["recipe", "mergekit", "hf"],
        help="recipe YAML (default), mergekit YAML, or a HF checkpoint",
    )
    p.add_argument(
        "-o", "--out", required=True, metavar="OUT", help="output file (recipe, mergekit) or directory (hf, or pareto)"
    )
    p.add_argument(
        "--stage",
        default=None,
        metavar="NAME",
        help="choose among one stage's candidates of a staged run (sequential PS+DFS: ps = the PS winner alone, dfs)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUT when it is an earlier evomerge output of this format (never anything in a run directory, "
        "a source model, ., $HOME or /)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evomerge.export import export

    for path in export(
        args.run_dir, which=args.which, format=args.format, out=args.out, force=args.force, stage=args.stage
    ):
        print(path)
    return 0
