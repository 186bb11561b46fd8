"""``evomerge merge RECIPE.yaml -o OUT_DIR``: build one merged checkpoint from a recipe.

Accepts our recipe YAML, mergekit's YAML and data-flow recipes alike (detected by
:func:`evomerge.merge.formats.load_recipe`); writes safetensors shards, config, tokenizer and a model
card (the recipe's ``materialize``: :func:`evomerge.merge.materialize.materialize`, or the folded
path of :func:`evomerge.merge.dataflow.fold.materialize_dataflow`).
"""

from __future__ import annotations

import argparse
import sys
import time

from evomerge.dtypes import DTYPE_NAMES


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "merge",
        help="merge models by a recipe into a Hugging Face checkpoint directory",
        description="Merge the models of RECIPE (evomerge or mergekit YAML) into OUT_DIR.",
    )
    p.add_argument("recipe", metavar="RECIPE.yaml", help="recipe file: evomerge recipe YAML or mergekit YAML")
    p.add_argument(
        "-o",
        "--output",
        "--out",
        dest="out_dir",
        metavar="OUT_DIR",
        required=True,
        help="output directory (must be empty or absent unless --force)",
    )
    p.add_argument("--device", default="cpu", help="where to compute the merge: cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--dtype",
        choices=DTYPE_NAMES,
        default=None,
        help="dtype of the written weights (default: the recipe's dtype)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUT_DIR when it is an earlier evomerge output (never a run directory, a source model, ., $HOME or /)",
    )
    p.add_argument(
        "--max-shard-size",
        default="2GB",
        metavar="SIZE",
        help="largest safetensors shard, e.g. 500MB, 2GB (default: 2GB)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def parse_size(text: str) -> int:
    """``"2GB"`` → 2·10⁹, ``"500MiB"`` → 500·2²⁰, plain digits are bytes."""
    from evomerge.errors import ConfigError

    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = text.strip().upper()
    digits = s.rstrip("KMGIB")
    unit = s[len(digits) :]
    try:
        value = float(digits)
    except ValueError:
        value = -1.0
    if unit not in units or value <= 0:
        raise ConfigError(f"--max-shard-size: expected a size like 500MB or 2GB, got {text!r}")
    return int(value * units[unit])


def run(args) -> int:
    from evomerge.merge.formats import load_recipe

    max_shard = parse_size(args.max_shard_size)
    start = time.perf_counter()
    out = load_recipe(args.recipe).materialize(
        args.out_dir,
        device=args.device,
        dtype=args.dtype,
        force=args.force,
        progress=not args.no_progress,
        max_shard_bytes=max_shard,
    )
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
