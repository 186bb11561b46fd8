"""``evomerge eval MODEL_DIR_OR_RECIPE --config CONFIG.yaml``: score one model on a config's objectives.

MODEL_DIR_OR_RECIPE is a Hugging Face checkpoint directory, or a recipe YAML (ours, mergekit's, or a
data-flow recipe) merged on the fly. CONFIG.yaml is a bare fitness config or a run config with a
``fitness:`` key. Prints a table, or the full :class:`fitness.FitnessResult` as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from evomerge.dtypes import DTYPE_NAMES, torch_dtype
from evomerge.errors import ConfigError, ModelError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="score a checkpoint or a recipe on a fitness config's objectives",
        description="Score MODEL_DIR_OR_RECIPE (a checkpoint directory, or a recipe YAML merged on the fly) "
        "on the objectives of CONFIG.yaml.",
    )
    p.add_argument("model", metavar="MODEL_DIR_OR_RECIPE", help="checkpoint directory or recipe YAML")
    p.add_argument(
        "--config", required=True, metavar="CONFIG.yaml", help="fitness config, or a run config with a 'fitness:' key"
    )
    p.add_argument(
        "--split",
        choices=["calibration", "validation"],
        default="validation",
        help="which split to score (default: validation, the held-out one)",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="examples per forward pass (default 16)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="score only the first N examples of each task")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import torch

    from evomerge.fitness import Fitness, evaluate_objectives, load_fitness_config
    from evomerge.merge.materialize import check_device

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    check_device(args.device)
    target = Path(args.model).expanduser()
    if not target.exists():
        raise ModelError(f"model not found: {target} (expected a checkpoint directory or a recipe YAML)")
    # Validate the config and read every task before loading or merging any model.
    fit = Fitness(_fitness_config(args.config, load_fitness_config))
    if args.limit is not None:
        for task in fit.tasks.values():
            task.limit(args.split, args.limit)
    dtype = torch_dtype(args.dtype)
    with contextlib.ExitStack() as stack:
        model, tokenizer = _load_model(target, device=args.device, dtype=dtype, stack=stack)
        with torch.inference_mode():
            result = evaluate_objectives(model, tokenizer, fit.objectives, args.split, batch_size=args.batch_size)
    result.meta["model"] = str(target)
    if args.json:
        print(result.to_json(indent=2))
    else:
        _print_table(result)
    return 0


def _load_model(target: Path, *, device: str, dtype, stack: contextlib.ExitStack):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if target.is_dir():
        if not (target / "config.json").is_file():
            raise ModelError(f"{target}: not a Hugging Face checkpoint (no config.json)")
        from evomerge.pool.lazy import LazyCheckpoint

        LazyCheckpoint(target, label=str(target))  # no weights file: one line, not transformers' OSError
        model = AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype).to(device).eval()
        return model, AutoTokenizer.from_pretrained(str(target))

    from evomerge.merge.formats import load_recipe

    recipe = load_recipe(target)
    # a parameter-space recipe is merged into this directory and loaded back; a data-flow one runs
    # as a path model over its loaded sources
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evomerge-eval-")))
    return recipe.load_model(workdir, device=device, dtype=dtype)


def _print_table(result) -> None:
    print(f"split: {result.split}   wall: {result.wall_seconds:.2f} s   tokens: {result.tokens}")
    print(f"{'objective':<28} {'direction':<9} {'weight':>6} {'value':>10} {'n':>11}")
    objectives, values = result.named_values()  # the run's names, directions, weights
    for o, ov in zip(objectives, result.objectives):
        ts = result.tasks[ov.task]
        print(f"{o.name:<28} {o.direction:<9} {o.weight:>6g} {ov.value:>10.4f} {ts.n_evaluated:>5}/{ts.n_total:<5}")
    if len(objectives) > 1:
        print(f"{'fitness (weighted sum)':<28} {'maximize':<9} {'':>6} {objectives.scalar(values):>10.4f}")
    sys.stdout.flush()


def _fitness_config(path: str, load_fitness_config):
    """The config's fitness section; a toy-world run config without one scores the world's
    target and every expert's skill (what a user checking a toy merge by hand wants to see)."""
    import yaml

    from evomerge.fitness import parse_fitness_config

    try:
        data = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
    except yaml.YAMLError:
        data = None  # load_fitness_config reports the syntax error with its line
    if isinstance(data, dict) and "toyworld" in data and "fitness" not in data:
        from pydantic import BaseModel, ValidationError

        from evomerge.config import ToyWorldSection
        from evomerge.toyworld import build_toyworld
        from evomerge.validation import format_validation_error

        class ToyWorldOnly(BaseModel):  # the run config's rules for this section, keys named in full
            toyworld: ToyWorldSection

        try:
            tw = ToyWorldOnly.model_validate({"toyworld": data["toyworld"] or {}}).toyworld
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, path, ToyWorldOnly)) from None
        world = build_toyworld(preset=tw.preset, seed=tw.seed, **({"dir": tw.dir} if tw.dir else {}))
        tasks = [world.target_task] + [t for t in dict.fromkeys(world.expert_skills.values()) if t != world.target_task]
        return parse_fitness_config(world.fitness_config(tasks), where=f"{path} (toy world)")
    return load_fitness_config(path)
