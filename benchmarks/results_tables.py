"""Both tables of docs/results.md (issue 11 §5) with one command, as they were measured.

1. The seed paper's table on the ``carry`` toy world, 3 world seeds, 200 evaluations per search
   (:mod:`paper_table`), then its DFS column again with the structured set-up docs/spaces.md
   recommends (``encoding: choice``, CatCMA).
2. M2N2 vs CMA-ES vs TPE vs random search on the demo world's multi-skill objective (math, lang,
   target), 3 run seeds, 200 evaluations, with the figure (:mod:`m2n2_recipes`).

Every part prints JSON lines (also written under ``--out``) and its Markdown table; nothing here
is timed in CI. About 1.5 h on one quiet 2-core machine (the worlds are built and cached first).

    .venv/bin/python benchmarks/results_tables.py --out /tmp/results
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The DFS set-up of docs/spaces.md ("The DFS set-up to use"), at the table's budget.
DFS_CHOICE = {
    "space": {
        "kind": "dataflow",
        "encoding": "choice",
        "repeats": 2,
        "embed_from": "math",
        "fix_ends": False,
        "scale_mode": "per_layer",
        "scale_range": [0.5, 2.0],
    },
    "driver": {"name": "catcma", "options": {}},
}


def commands(out: Path, evals: int) -> list[tuple[str, list[str]]]:
    py = sys.executable
    table = [py, str(HERE / "paper_table.py"), "--preset", "carry", "--world-seeds", "0", "1", "2"]
    table += ["--evals", str(evals)]
    return [
        ("paper_table", [*table, "--jsonl", str(out / "paper_table.jsonl"), "--markdown", str(out / "paper_table.md")]),
        (
            "paper_table_dfs_choice",
            [
                *table,
                "--columns",
                "DFS",
                "--space-json",
                "DFS=" + json.dumps(DFS_CHOICE),
                "--jsonl",
                str(out / "paper_table_dfs_choice.jsonl"),
                "--markdown",
                str(out / "paper_table_dfs_choice.md"),
            ],
        ),
        (
            "m2n2_recipes",
            [py, str(HERE / "m2n2_recipes.py"), "--seeds", "0", "1", "2", "--evals", str(evals), "--table"]
            + ["--jsonl", str(out / "m2n2_recipes.jsonl"), "--out", str(out / "m2n2_recipes.png")],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSON lines, tables and figure")
    ap.add_argument("--evals", type=int, default=200, help="evaluations per search (default 200, as measured)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    todo = commands(args.out, args.evals)
    if args.dry_run:
        for name, cmd in todo:
            print(json.dumps({"part": name, "command": cmd}))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, cmd in todo:
        rc = subprocess.run(cmd).returncode
        print(json.dumps({"part": name, "rc": rc}), flush=True)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
