"""Data-flow search (DFS) on the toy world: does any layer path help, and does the search find it?

Two parts, both on the same world and the same held-out problems:

* **oracle** — hand-made layer paths through the two experts, scored with the run's own merge
  worker: every path that takes layer ``d`` from one expert or the other at each depth (2^L
  paths per frame; ``embed_from`` either expert), one expert's stack followed by the other's top
  layers (junction scale 1 or ½), and the two stacks interleaved. The oracle is the best path *on
  calibration* (what a search could select), reported by its held-out score: it says whether a
  layer path that helps exists at all.
* **search** — real DFS runs of the product (``evomerge run``, in-process, seeded), one per
  method and seed, each over the data-flow space of the two experts framed by ``--embed-from``
  (default the language expert, the paper's model A), started at model A's own path:

  ============== ================================================================
  method         space encoding / driver
  ============== ================================================================
  indicator-cmaes the paper's: an indicator per slot, CMA-ES on reals (x0 first)
  indicator-catcma the same genes as categories: CatCMA
  choice-cmaes   one {skip, A.d, B.d} gene per depth and repetition, CMA-ES
  choice-catcma  the same with CatCMA (the structured encoding + a mixed optimiser)
  ============== ================================================================

  Each run's best-on-calibration candidate is scored on the held-out validation split.

Baselines (held-out): the base, each expert, untuned merges (as in ``search_efficiency.py``).
The goal (issue 11): DFS alone ≥ best source + 0.10 on the held-out target on every seed, where
the sources are the base and the experts.

Output: JSON lines — ``world``, ``baseline`` (one per model), ``oracle_path`` (one per path with
``--oracle``), ``oracle`` (the best), ``run`` (one per search; its best path is also scored with every scale
set to 1), ``summary``; ``--table`` prints the
Markdown tables of ``docs/results.md`` to stderr.

Defaults: the best set-up found (docs/results.md, "Data-flow search"): the ``carry`` world,
model A = the math expert, free ends, r = 2, per-layer scales in [0.5, 2], 300 evaluations.

    .venv/bin/python benchmarks/dfs_search.py --world-seed 1 --oracle --methods choice-catcma indicator-catcma --seeds 0 --table
    .venv/bin/python benchmarks/dfs_search.py --preset demo --embed-from lang --fix-ends --evals 200
    .venv/bin/python benchmarks/dfs_search.py --world v7 --world-seed 1 --methods indicator-catcma choice-catcma
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
for p in (_HERE.parent, _HERE):  # the repo's packages and the sibling benchmark's helpers
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from json_lines import JsonLines  # noqa: E402  (a sibling script's module)
from search_efficiency import HeldOut, baselines, best_so_far, default_checkpoints, mean_std, read_log  # noqa: E402

#: Worlds of this benchmark, as changes to the demo preset's settings. ``v7``: the weak-base
#: prototype of docs/toyworld.md ("v7": the base meets addition at weight 0.2 in L1 and 0.3 in L2
#: instead of 0.4 / 0.6), where the base does the target at ≈ 0.05 and the experts at ≈ 0.01.
WORLDS: dict[str, dict[str, Any]] = {
    "v7": {"base_addition": {"L1.addition": 0.2, "L2.addition": 0.3}},
}

#: method label -> (space encoding, driver name, driver options)
METHODS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "indicator-cmaes": ("indicator", "cmaes", {"include_x0": True}),
    "indicator-catcma": ("indicator", "catcma", {}),
    "choice-cmaes": ("choice", "cmaes", {"include_x0": True}),
    "choice-catcma": ("choice", "catcma", {}),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--preset", default="carry", help="toy-world preset (default carry)")
    where.add_argument(
        "--world",
        choices=sorted(WORLDS),
        default=None,
        help="a toy world of this benchmark's own, built and cached like a preset (see WORLDS)",
    )
    where.add_argument("--world-dir", default=None, metavar="DIR", help="a complete toy world (manifest.json) in DIR")
    p.add_argument("--world-seed", type=int, default=0, help="the preset's world seed (default 0)")
    p.add_argument("--oracle", action="store_true", help="score the hand-made oracle paths first")
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS), help="searches to run")
    p.add_argument("--evals", type=int, default=300, help="evaluations per search (default 300; 0: no search)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (default 0 1 2)")
    p.add_argument("--embed-from", default="math", help="model A: the expert that frames the path (default math)")
    p.add_argument("--repeats", type=int, default=2, help="repetitions r of the layout (default 2)")
    p.add_argument(
        "--fix-ends",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="model A's first and last layers frame the path (default: --no-fix-ends, any path)",
    )
    p.add_argument("--scale-mode", choices=["matrix", "per_layer", "none"], default="per_layer")
    p.add_argument("--scale-range", type=float, nargs=2, default=(0.5, 2.0), metavar=("LO", "HI"))
    p.add_argument(
        "--checkpoints",
        type=int,
        nargs="*",
        default=None,
        help="evaluation counts at which the incumbent is scored held-out (default 10, 25, 50, 100, 200, ... --evals)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--work-dir", default=None, help="where run directories go (default: a temporary directory)")
    p.add_argument("--jsonl", default=None, help="also write the JSON lines to this file")
    p.add_argument("--table", action="store_true", help="print the Markdown tables to stderr at the end")
    return p.parse_args(argv)


def load_world(args):
    from evomerge.errors import EvomergeError
    from evomerge.toyworld import build_toyworld, open_toyworld

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.world is not None:
        from evomerge.toyworld import preset
        from evomerge.toyworld.settings import BASE_MIX

        demo = preset("demo", seed=args.world_seed)
        base = dataclasses.replace(demo.base, mixture={**BASE_MIX, **WORLDS[args.world]["base_addition"]})
        return build_toyworld(settings=demo.replace(base=base), log=log)
    if args.world_dir is None:
        return build_toyworld(preset=args.preset, seed=args.world_seed, log=log)
    try:
        return open_toyworld(args.world_dir, log=log)
    except EvomergeError as exc:
        raise SystemExit(f"error: {exc}") from None


# ---- oracle paths ----------------------------------------------------------------------------
def _step(model: str, layer: int, scale: float = 1.0) -> dict:
    return {"model": model, "layer": layer, "scale": scale}


def oracle_paths(a: str, b: str, n: int) -> list[tuple[str, str, list[dict]]]:
    """``(name, embed_from, path)``: per-depth choices, stacks and interleavings of ``a`` and ``b``."""
    out = []
    for frame in (a, b):
        for picks in itertools.product((a, b), repeat=n):
            code = "".join("A" if m == a else "B" for m in picks)
            out.append((f"choice {code}", frame, [_step(m, d) for d, m in enumerate(picks)]))
        for first, second in ((a, b), (b, a)):
            for k in range(1, n + 1):
                for s in (1.0, 0.5):
                    top = [_step(second, d, s if j == 0 else 1.0) for j, d in enumerate(range(n - k, n))]
                    out.append(
                        (f"stack {first}+{second}[{n - k}:] s={s:g}", frame, [_step(first, d) for d in range(n)] + top)
                    )
            out.append(
                (
                    f"interleave {first}/{second}",
                    frame,
                    [x for d in range(n) for x in (_step(first, d), _step(second, d))],
                )
            )
    return out


def unit_scales(recipe: dict) -> dict:
    """``recipe`` (a data-flow recipe) with every step's input scale set to 1."""
    return {**recipe, "path": [{**step, "scale": 1.0} for step in recipe["path"]]}


def compact(path: list[dict]) -> str:
    return " ".join(f"{s['model']}.{s['layer']}" + (f"*{s['scale']:.2f}" if s["scale"] != 1.0 else "") for s in path)


def run_oracle(world, held: HeldOut, emit) -> dict:
    a, b = list(world.experts)[:2]
    sources = {a: str(world.experts[a]), b: str(world.experts[b])}
    target = world.target_task
    rows = []
    for name, frame, path in oracle_paths(a, b, int(world.settings.layers)):
        recipe = {"merge_method": "dataflow", "sources": sources, "embed_from": frame, "path": path, "dtype": "float32"}
        cal = held.recipe(recipe, "calibration")
        row = {"kind": "oracle_path", "name": name, "embed_from": frame, "path": compact(path), "calibration": cal}
        rows.append((row, recipe))
        emit(row)
    best_row, best_recipe = max(rows, key=lambda r: r[0]["calibration"][target])
    return {
        "kind": "oracle",
        "paths": len(rows),
        "name": best_row["name"],
        "embed_from": best_row["embed_from"],
        "path": best_row["path"],
        "calibration": best_row["calibration"],
        "validation": held.recipe(best_recipe),
    }


# ---- searches --------------------------------------------------------------------------------
def run_config(args, world, method: str, seed: int) -> dict[str, Any]:
    encoding, driver, options = METHODS[method]
    if args.world_dir or args.world:
        source = {
            "models": {"base": str(world.base), "experts": {k: str(v) for k, v in world.experts.items()}},
            "fitness": world.fitness_config([world.target_task]),
        }
    else:
        source = {"toyworld": {"preset": args.preset, "seed": args.world_seed}}
    return {
        "description": f"dfs_search {method} seed {seed}",
        **source,
        "space": {
            "kind": "dataflow",
            "encoding": encoding,
            "repeats": args.repeats,
            "embed_from": args.embed_from,
            "fix_ends": bool(args.fix_ends),
            "scale_mode": args.scale_mode,
            "scale_range": list(args.scale_range),
        },
        "driver": {"name": driver, "options": dict(options)},
        "budget": {"max_evals": int(args.evals)},
        "evaluator": {"backend": "inprocess", "device": "cpu", "batch_size": int(args.batch_size)},
        "run": {"seed": int(seed), "checkpoint_every": "generation"},
    }


def one_run(args, world, held: HeldOut, method: str, seed: int, work: Path) -> dict:
    import yaml

    from evomerge.cli import main as cli

    run_dir = work / f"{method}-s{seed}"
    cfg_path = work / f"{method}-s{seed}.yaml"
    cfg_path.write_text(yaml.safe_dump(run_config(args, world, method, seed), sort_keys=False))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the CLI's status lines: stdout is for JSON lines
        rc = cli(["run", str(cfg_path), "--run-dir", str(run_dir)])
    if rc != 0:
        raise SystemExit(f"error: run {method} seed {seed} failed")
    wall = time.perf_counter() - t0
    records = read_log(run_dir)
    curve, inc = best_so_far(records)
    best = records[inc[-1]] if inc and inc[-1] >= 0 else None
    start = records[0]
    target = world.target_task
    scored: dict[int, dict[str, float]] = {}

    def heldout(i: int) -> dict[str, float]:
        if i not in scored:
            scored[i] = held.recipe(records[i]["recipe"])
        return scored[i]

    checkpoints = [n for n in (args.checkpoints or default_checkpoints(args.evals)) if 1 <= n <= len(records)]
    held_curve = [heldout(inc[n - 1])[target] if inc[n - 1] >= 0 else None for n in checkpoints]
    return {
        "kind": "run",
        "method": method,
        "seed": seed,
        "evals": len(records),
        "dim": len(start["genome"]) if isinstance(start.get("genome"), list) else None,
        "start_calibration": start.get("score"),
        "curve": {"evals": list(range(1, len(records) + 1)), "best_calibration": [round(c, 6) for c in curve]},
        "heldout_curve": {"evals": checkpoints, target: held_curve},
        "best": None
        if best is None
        else {
            "id": best["id"],
            "path": compact(best["recipe"]["path"]),
            "calibration": best["objectives"],
            "validation": heldout(inc[-1]),
            # the same path with every input scale 1: how much of the score the scales carry
            "validation_unit_scales": held.recipe(unit_scales(best["recipe"])),
        },
        "seconds": round(wall, 1),
        "run_dir": str(run_dir),
    }


# ---- summary ---------------------------------------------------------------------------------
def summarize(world, base: list[dict], oracle: dict | None, runs: list[dict]) -> dict:
    t = world.target_task
    sources = {b["name"]: b["validation"][t] for b in base if b["name"] == "base" or b["name"].startswith("expert:")}
    best_source = max(sources.values())
    rows = []
    by_method: dict[str, list[dict]] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    for method, rs in by_method.items():
        vals = [r["best"]["validation"][t] for r in rs if r["best"]]
        m, s = mean_std(vals) if vals else (math.nan, 0.0)
        rows.append(
            {
                "method": method,
                "seeds": [r["seed"] for r in rs],
                "evals": rs[0]["evals"],
                "heldout_target_mean": round(m, 4),
                "heldout_target_std": round(s, 4),
                "heldout_target_per_seed": [round(v, 4) for v in vals],
                "calibration_best_mean": round(float(np.mean([r["curve"]["best_calibration"][-1] for r in rs])), 4),
                "heldout_target_at": {
                    str(n): round(float(np.mean([r["heldout_curve"][t][k] for r in rs])), 4)
                    for k, n in enumerate(rs[0]["heldout_curve"]["evals"])
                    if all(k < len(r["heldout_curve"][t]) and r["heldout_curve"][t][k] is not None for r in rs)
                },
                "margin_over_best_source": round(m - best_source, 4),
                "goal": bool(vals) and all(v >= best_source + 0.10 for v in vals),
            }
        )
    out = {"kind": "summary", "target": t, "sources": sources, "best_source": best_source, "rows": rows}
    if oracle is not None:
        out["oracle_heldout"] = oracle["validation"][t]
        out["oracle_margin_over_best_source"] = round(oracle["validation"][t] - best_source, 4)
    return out


def markdown(summary: dict, base: list[dict], oracle: dict | None) -> str:
    t = summary["target"]
    lines = [f"| model | held-out {t} |", "|---|---|"]
    lines += [f"| {b['name']} | {b['validation'][t]:.3f} |" for b in base]
    if oracle is not None:
        lines.append(
            f"| oracle path ({oracle['name']}, frame {oracle['embed_from']}: {oracle['path']}) | {oracle['validation'][t]:.3f} |"
        )
    lines += [
        "",
        f"| method | evals | held-out {t} (mean ± std) | per seed | best calibration | vs best source | goal (≥ +0.10 every seed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['method']} | {r['evals']} | {r['heldout_target_mean']:.3f} ± {r['heldout_target_std']:.3f} | "
            f"{', '.join(f'{v:.3f}' for v in r['heldout_target_per_seed'])} | {r['calibration_best_mean']:.3f} | "
            f"{r['margin_over_best_source']:+.3f} | {'yes' if r['goal'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    t_start = time.perf_counter()
    world = load_world(args)
    emit = JsonLines(args.jsonl)

    emit(
        {
            "kind": "world",
            "preset": None if (args.world_dir or args.world) else args.preset,
            "world": args.world,
            "world_seed": args.world_seed,
            "root": str(world.root),
            "key": world.key,
        }
    )
    tasks = [world.target_task] + sorted(set(world.expert_skills.values()) - {world.target_task})
    held = HeldOut(world, args.batch_size, tasks)
    oracle, runs = None, []
    tmp = None
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="evomerge-dfs-")
        work = Path(tmp.name)
    try:
        base = baselines(world, held)
        for b in base:
            emit(b)
        if args.oracle:
            oracle = run_oracle(world, held, emit)
            emit(oracle)
        if args.evals > 0:
            for method in args.methods:
                for seed in args.seeds:
                    r = one_run(args, world, held, method, seed, work)
                    runs.append(r)
                    emit(r)
                    print(
                        f"[{time.perf_counter() - t_start:7.1f}s] {method} seed {seed}: calibration "
                        f"{r['curve']['best_calibration'][-1]:.3f}, held-out {world.target_task} "
                        f"{(r['best'] or {}).get('validation', {}).get(world.target_task, float('nan')):.3f}",
                        file=sys.stderr,
                    )
    finally:
        held.close()
        if tmp is not None:
            tmp.cleanup()
    summary = summarize(world, base, oracle, runs)
    summary["seconds_total"] = round(time.perf_counter() - t_start, 1)
    emit(summary)
    if args.table:
        print(markdown(summary, base, oracle), file=sys.stderr)
    emit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
