"""The seed paper's table on the toy world: every source, the untuned merges and every search.

For each world seed of a preset (default ``carry``: the world where every source fails the
target) this scores on the held-out validation split of the world's target task:

    source 1 | source 2 | base | untuned TA | untuned TIES | untuned DARE-TIES |
    PS | DFS | PS+DFS (sequential) | PS+DFS (joint)

Sources, base and untuned merges (``evomerge.demo.untuned_recipes``: task arithmetic 1/n, TIES and
DARE-TIES at density 0.5, weight 1) are scored with the run's own merge worker. Every search is a
real run of the product (:func:`evomerge.runs.api.run`, what ``evomerge run`` calls), in-process,
seeded, early stopping off, fitness = the target on its calibration split, CMA-ES, ``--evals``
evaluations each (equal budgets; the sequential form splits the same budget over its two stages,
``--seq-ps`` of it to the PS stage). The held-out score of a search is the one the run itself writes
(``validation.json``: its best-on-calibration candidate on the validation split).

Spaces (``SPACES`` below; ``--space-json COLUMN=JSON`` overrides one):

* PS: per-layer-group task-arithmetic weights of both experts in [0, ``--weight-max``];
* DFS: a data-flow path over both experts' layers, repeated r = 2, one input scale per layer,
  framed by the language expert (the target is asked and answered in L2);
* PS+DFS joint: a path over a PS merge (in the language expert's place) and the math expert,
  both searched together; sequential: the PS stage's winner is model A of a DFS stage that starts
  at A's identity path.

Output: one JSON line per world (``kind: world``), per baseline and run (``kind: cell``), and a
``summary`` (goals per world seed); ``--markdown PATH`` writes the table.

    nice -n 10 .venv/bin/python benchmarks/paper_table.py --preset carry --world-seeds 0 1 2 --evals 200 \\
        --markdown /tmp/paper_table.md
    nice -n 10 .venv/bin/python benchmarks/paper_table.py --preset test --world-seeds 0 --evals 12
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from json_lines import JsonLines  # noqa: E402  (a sibling script's module)

# The benchmark runs from a checkout: make the repo's packages importable without an install.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SOURCES = ("source 1", "source 2", "base")
UNTUNED = {"untuned TA": "task_arithmetic", "untuned TIES": "ties", "untuned DARE-TIES": "dare_ties"}
SEARCHES = ("PS", "DFS", "PS+DFS (sequential)", "PS+DFS (joint)")
COLUMNS = SOURCES + tuple(UNTUNED) + SEARCHES


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="carry", choices=["demo", "test", "carry"], help="toy-world preset")
    p.add_argument("--world-seeds", type=int, nargs="+", default=[0, 1, 2], help="world seeds (default 0 1 2)")
    p.add_argument("--run-seed", type=int, default=0, help="seed of every search (default 0)")
    p.add_argument("--evals", type=int, default=200, help="evaluations per search (default 200)")
    p.add_argument("--seq-ps", type=float, default=0.5, help="share of the sequential budget for its PS stage")
    p.add_argument("--weight-max", type=float, default=1.5, help="PS weights in [0, W] (default 1.5, as the demo)")
    p.add_argument(
        "--columns", nargs="*", default=list(SEARCHES), choices=SEARCHES, help="searches to run (default: all)"
    )
    p.add_argument(
        "--space-json",
        action="append",
        default=[],
        metavar="COLUMN=JSON",
        help='replace a search\'s space and driver, e.g. DFS={"space": {...}, "driver": {...}}',
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=None, help="where run directories go (default: a temporary directory)")
    p.add_argument("--jsonl", default=None, help="also write the JSON lines to this file")
    p.add_argument("--markdown", default=None, help="write the Markdown table to this file")
    p.add_argument(
        "--from-jsonl", default=None, metavar="PATH[,PATH...]", help="no runs: the summary and table of saved files"
    )
    args = p.parse_args(argv)
    if args.evals < 2:
        p.error("--evals must be >= 2")
    if not 0 < args.seq_ps < 1:
        p.error("--seq-ps must be in (0, 1)")
    args.overrides = {}
    for item in args.space_json:
        column, _, text = item.partition("=")
        if column not in SEARCHES:
            p.error(f"--space-json: unknown column {column!r} (known: {', '.join(SEARCHES)})")
        args.overrides[column] = json.loads(text)
    return args


# ---------------------------------------------------------------------------------------------
def searches(world, args) -> dict[str, dict[str, Any]]:
    """Column → ``{space, driver, budget}`` of each search (before ``--space-json``)."""
    layers = int(world.settings.layers)
    ps = {
        "method": "task_arithmetic",
        "layer_groups": layers,
        "params": ["weight"],
        "ranges": {"weight": [0.0, float(args.weight_max)]},
    }
    frame = "lang" if "lang" in world.experts else None
    dfs = {"repeats": 2, "scale_mode": "per_layer", **({"embed_from": frame} if frame else {})}
    cma = {"name": "cmaes", "options": {}}
    n_ps = max(1, round(args.evals * args.seq_ps))
    out = {
        "PS": {"space": {"kind": "parameter", **ps}, "driver": cma, "budget": {"max_evals": args.evals}},
        "DFS": {"space": {"kind": "dataflow", **dfs}, "driver": cma, "budget": {"max_evals": args.evals}},
        "PS+DFS (joint)": {"space": {"kind": "psdfs", **ps, **dfs}, "driver": cma, "budget": {"max_evals": args.evals}},
        "PS+DFS (sequential)": {
            "space": {"kind": "psdfs", "mode": "sequential", **ps, **dfs},
            "driver": cma,
            "budget": {"stages": {"ps": n_ps, "dfs": args.evals - n_ps}},
        },
    }
    for column, override in args.overrides.items():
        out[column] = {**out[column], **override}
    return out


def run_config(world, search: dict[str, Any], args, column: str) -> dict[str, Any]:
    return {
        "description": f"paper_table {column} world seed {world.settings.seed}",
        "models": {"base": str(world.base), "experts": {k: str(v) for k, v in world.experts.items()}},
        "fitness": world.fitness_config([world.target_task]),
        **search,
        "evaluator": {"backend": "inprocess", "device": "cpu", "batch_size": int(args.batch_size)},
        "run": {"seed": int(args.run_seed), "checkpoint_every": "generation"},
    }


def baseline_cells(world, held) -> list[dict]:
    """The sources, the base and the untuned merges on the held-out split (the run's worker)."""
    from evomerge.demo import single_model_recipe, untuned_recipes

    base, experts = str(world.base), {k: str(v) for k, v in world.experts.items()}
    names = list(experts)
    recipes = {
        "source 1": single_model_recipe(base, experts, names[0]),
        "source 2": single_model_recipe(base, experts, names[1]),
        "base": single_model_recipe(base, experts, None),
    }
    untuned = untuned_recipes(base, experts)
    recipes.update({col: {**untuned[method], "seed": 0} for col, method in UNTUNED.items()})
    cells = []
    for column, recipe in recipes.items():
        label = {"source 1": f"expert:{names[0]}", "source 2": f"expert:{names[1]}"}.get(column, column)
        cells.append({"kind": "cell", "column": column, "label": label, "validation": held.recipe(recipe)})
    return cells


def search_cell(world, args, column: str, search: dict, work: Path, scorer) -> dict:
    from evomerge.config import parse_config
    from evomerge.runs.api import run, validate_best

    run_dir = work / f"w{world.settings.seed}-{column.replace(' ', '_').replace('(', '').replace(')', '')}"
    cfg = parse_config(run_config(world, search, args, column), f"paper_table {column}")
    t0 = time.perf_counter()
    run(cfg, run_dir, progress=False)
    wall = time.perf_counter() - t0
    records = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines() if x.strip()]
    validated = validate_best(run_dir) or {}
    best = next((r for r in records if r.get("id") == validated.get("id")), None)
    stages: dict[str, int] = {}
    for r in records:
        stage = (r.get("meta") or {}).get("stage")
        if stage:
            stages[stage] = stages.get(stage, 0) + 1
    own = validated.get("objectives") or {}
    # Every task on the run's best (does it keep each expert's skill?), by the same merge worker;
    # the target's value must agree with the run's own validation.json.
    scores = own
    if best is not None:
        scores = {**scorer.recipe(best["recipe"]), **own}
    return {
        "kind": "cell",
        "column": column,
        "label": column,
        "validation": scores,
        "run_validation": own,
        "calibration_best": float(best["score"]) if best and best.get("score") is not None else None,
        "best_id": validated.get("id"),
        "evals": len(records),
        "stages": stages or None,
        "space": search["space"],
        "driver": search["driver"],
        "seconds": round(wall, 1),
        "run_dir": str(run_dir),
    }


# ---------------------------------------------------------------------------------------------
def goals(cells: list[dict], target: str, skills: dict[str, str]) -> dict[str, Any]:
    """The issue's goals for one world seed, from its cells' held-out scores (``skills``: expert
    name → its own task)."""
    v = {c["column"]: c["validation"].get(target) for c in cells}
    src = [v[c] for c in ("source 1", "source 2") if v.get(c) is not None]
    untuned = [v[c] for c in UNTUNED if v.get(c) is not None]
    best_src, best_untuned = max(src, default=None), max(untuned, default=None)
    out: dict[str, Any] = {"best_source": best_src, "best_untuned": best_untuned}
    if v.get("base") is not None:
        out["base_le_0.2"] = v["base"] <= 0.2
    own = {c["column"]: c for c in cells if c["column"] in ("source 1", "source 2")}
    if own:
        out["sources_le_0.1_on_target"] = all(c["validation"].get(target, 1) <= 0.1 for c in own.values())
        own_skill = [c["validation"].get(skills.get(c["label"].removeprefix("expert:"), ""), 0) for c in own.values()]
        out["sources_ge_0.9_on_own_skill"] = all(x >= 0.9 for x in own_skill)
    if v.get("PS") is not None and best_src is not None:
        out["PS_ge_best_source_+0.30"] = v["PS"] >= best_src + 0.30
        out["PS_ge_best_untuned_+0.15"] = best_untuned is not None and v["PS"] >= best_untuned + 0.15
    if v.get("DFS") is not None and best_src is not None:
        out["DFS_ge_best_source_+0.10"] = v["DFS"] >= best_src + 0.10
    if v.get("PS+DFS (sequential)") is not None and v.get("PS") is not None:
        out["sequential_ge_PS"] = v["PS+DFS (sequential)"] >= v["PS"]
    return out


def markdown(worlds: list[dict], cells: list[dict], preset: str) -> str:
    cols = [c for c in COLUMNS if any(x["column"] == c for x in cells)]
    names = (worlds[0].get("sources") if worlds else None) or []
    heads = [f"{c} ({names[int(c[-1]) - 1]})" if c.startswith("source ") and len(names) >= 2 else c for c in cols]
    lines = [
        f"| world ({preset}) seed | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for w in sorted(worlds, key=lambda w: w["seed"]):
        target = w["target"]
        mine = {c["column"]: c for c in cells if c["world_seed"] == w["seed"]}
        row = [f"{mine[c]['validation'].get(target, float('nan')):.3f}" if c in mine else "–" for c in cols]
        lines.append(f"| {w['seed']} | " + " | ".join(row) + " |")
    if len(worlds) > 1:
        means = []
        for c in cols:
            vals = [x["validation"].get(x["target"]) for x in cells if x["column"] == c]
            vals = [v for v in vals if v is not None]
            means.append(f"{sum(vals) / len(vals):.3f}" if vals else "–")
        lines.append("| mean | " + " | ".join(means) + " |")
    return "\n".join(lines)


def summary_of(worlds: list[dict], cells: list[dict]) -> dict:
    per = {}
    for w in worlds:
        mine = [c for c in cells if c["world_seed"] == w["seed"]]
        per[str(w["seed"])] = goals(mine, w["target"], w.get("expert_skills") or {})
    keys = sorted({k for g in per.values() for k, v in g.items() if isinstance(v, bool)})
    return {
        "kind": "summary",
        "goals_per_world_seed": per,
        "goals_all_seeds": {k: all(g.get(k, False) for g in per.values()) for k in keys},
    }


def from_jsonl(args) -> int:
    # Several saved files (comma-separated) combine: a later cell of a (world seed, column) wins.
    lines = [json.loads(x) for f in args.from_jsonl.split(",") for x in Path(f).read_text().splitlines() if x.strip()]
    worlds = list({x["seed"]: x for x in lines if x["kind"] == "world"}.values())
    cells = list({(x["world_seed"], x["column"]): x for x in lines if x["kind"] == "cell"}.values())
    print(json.dumps(summary_of(worlds, cells)))
    table = markdown(worlds, cells, worlds[0]["preset"] if worlds else args.preset)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    print(table, file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_jsonl:
        return from_jsonl(args)
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from search_efficiency import HeldOut  # the held-out scorer of the sibling benchmark

    from evomerge.toyworld import build_toyworld

    emit = JsonLines(args.jsonl)

    tmp = None
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="evomerge-paper-table-")
        work = Path(tmp.name)
    t_start = time.perf_counter()
    worlds, cells = [], []
    try:
        for seed in args.world_seeds:
            world = build_toyworld(preset=args.preset, seed=seed, log=lambda m: print(m, file=sys.stderr))
            target = world.target_task
            w = {"kind": "world", "preset": args.preset, "seed": seed, "key": world.key, "target": target}
            w.update(evals_per_search=args.evals, sources=list(world.experts), expert_skills=dict(world.expert_skills))
            worlds.append(w)
            emit(w)
            tasks = [target] + sorted(set(world.expert_skills.values()) - {target})
            held = HeldOut(world, args.batch_size, tasks)
            try:
                plan = searches(world, args)
                found = baseline_cells(world, held)
                for c in found:
                    c.update(world_seed=seed, target=target)
                    cells.append(c)
                    emit(c)
                for column in args.columns:
                    c = search_cell(world, args, column, plan[column], work, held)
                    c.update(world_seed=seed, target=target)
                    cells.append(c)
                    emit(c)
                    print(
                        f"[{time.perf_counter() - t_start:7.1f}s] world {seed} {column}: held-out {target} "
                        f"{c['validation'].get(target, float('nan')):.3f} ({c['seconds']:.0f} s)",
                        file=sys.stderr,
                    )
            finally:
                held.close()
    finally:
        if tmp is not None:
            tmp.cleanup()
        summary = summary_of(worlds, cells)
        summary["seconds_total"] = round(time.perf_counter() - t_start, 1)
        emit(summary)
        table = markdown(worlds, cells, args.preset)
        if args.markdown:
            Path(args.markdown).write_text(table + "\n")
        print(table, file=sys.stderr)
        emit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
