"""The Pareto demo's numbers: a two-objective run's front against the untuned task-arithmetic grid.

Reads a finished run of ``experiments/toy-pareto-nsga2.yaml`` (objectives ``math`` and ``lang``,
maximised; see docs/toyworld.md, "Two skills at once") and the toy world it ran on, then:

* **front**: the run's non-dominated candidates (calibration scores, as logged), each re-scored on
  the held-out validation split — ``math``, ``lang`` and, for interest, ``target`` (L2 addition,
  which neither objective names) — with the run's own merge worker;
* **grid**: untuned task arithmetic θ = θ_base + w_math·τ_math + w_lang·τ_lang with one weight per
  expert for every tensor, (w_math, w_lang) ∈ {0, step, …, max}², scored on the same calibration
  split; its non-dominated points are re-scored on validation too;
* **references**: the base and the two experts, on both splits;
* **hypervolume** (:func:`evomerge.pareto.hypervolume`) of each front against the
  reference point (0, 0): HV = area of ⋃_p [0, p_math] × [0, p_lang]; 1 is the ideal model.
  On calibration (what the search saw) and on validation (each set's own non-dominated points).

Output: JSON lines (``reference``, ``grid``, ``front``, ``summary``, and ``curve``: the calibration
front's hypervolume after the first n evaluations, for this run and every ``--compare`` run — a
fair comparison of samplers at equal budgets); ``--png`` draws the figure of
docs/toyworld.md (the report's Pareto plot with the references and the grid overlaid).

    nice -n 10 .venv/bin/python benchmarks/pareto_demo.py --run-dir runs/pareto --compare runs/pareto-tpe \\
        --jsonl pareto.jsonl --png docs/toyworld_pareto.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", required=True, help="a finished run of experiments/toy-pareto-nsga2.yaml")
    p.add_argument("--grid-max", type=float, default=1.5, help="largest untuned weight (default 1.5)")
    p.add_argument("--grid-step", type=float, default=0.25, help="grid step (default 0.25)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--compare",
        nargs="*",
        default=[],
        metavar="RUN_DIR",
        help="other runs on the same objectives (e.g. another sampler): their hypervolume curves too",
    )
    p.add_argument("--png", default=None, help="write the front figure here")
    p.add_argument("--jsonl", default=None, help="also write the JSON lines to this file")
    p.add_argument(
        "--replot",
        default=None,
        metavar="JSONL",
        help="only redraw --png from this script's earlier JSON lines (references and grid) and the run logs",
    )
    return p.parse_args(argv)


class Scorer:
    """Scores recipes (with the run's merge worker) and checkpoints on the world's tasks."""

    def __init__(self, world, tasks: list[str], batch_size: int):
        from evomerge.demo import world_worker_spec
        from evomerge.evaluator import InProcessBackend
        from evomerge.fitness import Fitness, parse_fitness_config

        cfg = parse_fitness_config(world.fitness_config(tasks))
        self.fitness = Fitness(cfg)
        self.batch_size = batch_size
        self.backend = InProcessBackend(world_worker_spec(world, cfg.model_dump(mode="json"), batch_size=batch_size))
        self._next_id = 0

    def recipe(self, recipe: dict, split: str) -> dict[str, float]:
        from evomerge.evaluator import EvalRequest

        self._next_id += 1
        self.backend.submit(EvalRequest(self._next_id, recipe, split, None))
        (res,) = self.backend.wait()
        if not res.ok:
            raise RuntimeError(f"evaluation failed: {res.error_line}")
        return {k: float(v) for k, v in res.objectives.items()}

    def checkpoint(self, path: Path, split: str) -> dict[str, float]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(str(path))
        with torch.no_grad():
            res = self.fitness.evaluate(model, tok, split, batch_size=self.batch_size, early_stopping=False)
        return {o.task: float(o.value) for o in res.objectives}

    def close(self) -> None:
        self.backend.close()


def ta_recipe(world, weights: dict[str, float]) -> dict[str, Any]:
    return {
        "merge_method": "task_arithmetic",
        "base_model": str(world.base),
        "models": [{"model": str(world.experts[n]), "parameters": {"weight": float(w)}} for n, w in weights.items()],
        "dtype": "float32",
    }


def front_of(points: list[dict], names: list[str], key: str) -> list[dict]:
    """The non-dominated members of ``points`` by their ``key`` scores on ``names`` (maximised),
    one per distinct score pair."""
    from evomerge.pareto import nondominated

    if not points:
        return []
    vals = np.array([[p[key][n] for n in names] for p in points], dtype=float)
    seen, out = set(), []
    for i in nondominated(vals):  # equal score pairs (e.g. several grid merges at 1.0 / 0.0) count once
        if tuple(vals[i]) not in seen:
            seen.add(tuple(vals[i]))
            out.append(points[i])
    return out


def hv(points: list[dict], names: list[str], key: str) -> float:
    from evomerge.pareto import hypervolume

    if not points:
        return 0.0
    return hypervolume(np.array([[p[key][n] for n in names] for p in points], dtype=float), np.zeros(len(names)))


def hv_curve(records: list[dict], names: list[str], marks: list[int]) -> dict[int, float]:
    """Hypervolume (reference (0, 0)) of the calibration front of the first n log records, per n."""
    from evomerge.pareto import hypervolume
    from evomerge.runs.store import as_float

    out = {}
    for n in marks:
        if n > len(records):
            break
        pts = [
            [as_float(r["objectives"][k]) for k in names]
            for r in records[:n]
            if r.get("status") == "ok" and all(k in (r.get("objectives") or {}) for k in names)
        ]
        out[n] = hypervolume(np.array(pts, dtype=float).reshape(-1, len(names)), np.zeros(len(names)))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        if not args.png:
            print("--replot needs --png", file=sys.stderr)
            return 2
        return replot(args)
    from evomerge.config import load_config
    from evomerge.runs.store import RunStore, as_float
    from evomerge.runs.summary import pareto_records
    from evomerge.toyworld import build_toyworld

    store = RunStore(args.run_dir)
    store.require()
    cfg = load_config(store.config_path)
    if cfg.toyworld is None:
        print(f"{store.config_path}: not a toy-world run", file=sys.stderr)
        return 2
    tw = cfg.toyworld
    world = build_toyworld(
        preset=tw.preset, seed=tw.seed, log=lambda m: print(m, file=sys.stderr), **({"dir": tw.dir} if tw.dir else {})
    )
    meta = store.read_json(store.root / "meta.json") or {}
    names = [o["name"] for o in meta["objectives"]]
    if len(names) != 2:
        print(f"{args.run_dir}: expected a two-objective run, got objectives {names}", file=sys.stderr)
        return 2
    records = store.read_log()
    held_tasks = list(dict.fromkeys([*names, world.target_task]))
    scorer = Scorer(world, held_tasks, args.batch_size)
    out_f = open(args.jsonl, "w") if args.jsonl else None

    def emit(obj: dict) -> None:
        line = json.dumps(obj)
        print(line, flush=True)
        if out_f:
            out_f.write(line + "\n")
            out_f.flush()

    try:
        refs = []
        for label, path in [("base", world.base), *((f"expert:{n}", p) for n, p in world.experts.items())]:
            ref = {
                "kind": "reference",
                "name": label,
                "calibration": scorer.checkpoint(path, "calibration"),
                "validation": scorer.checkpoint(path, "validation"),
            }
            refs.append(ref)
            emit(ref)

        levels = np.round(np.arange(0.0, args.grid_max + 1e-9, args.grid_step), 6)
        grid = []
        for wm in levels:
            for wl in levels:
                weights = {n: (wm if n == "math" else wl) for n in world.experts}
                grid.append(
                    {
                        "weights": {"math": float(wm), "lang": float(wl)},
                        "calibration": scorer.recipe(ta_recipe(world, weights), "calibration"),
                    }
                )
        grid_front = front_of(grid, names, "calibration")
        for p in grid_front:
            weights = {n: p["weights"][n] for n in world.experts}
            p["validation"] = scorer.recipe(ta_recipe(world, weights), "validation")
        emit({"kind": "grid", "levels": levels.tolist(), "points": grid, "front": [p["weights"] for p in grid_front]})

        front = []
        for r in sorted(pareto_records(records), key=lambda r: -as_float(r["objectives"][names[0]])):
            member = {
                "kind": "front",
                "id": r["id"],
                "calibration": {k: as_float(v) for k, v in r["objectives"].items()},
                "validation": scorer.recipe(r["recipe"], "validation"),
                "recipe": r["recipe"],
            }
            front.append(member)
            emit(member)

        summary = {
            "kind": "summary",
            "run_dir": str(store.root),
            "objectives": names,
            "evaluations": len(records),
            "reference_point": [0.0, 0.0],
            "front_size": len(front),
            "grid_size": len(grid),
            "grid_front_size": len(grid_front),
            "hypervolume": {
                "run_calibration": hv(front, names, "calibration"),
                "grid_calibration": hv(grid_front, names, "calibration"),
                "run_validation": hv(front_of(front, names, "validation"), names, "validation"),
                "grid_validation": hv(front_of(grid_front, names, "validation"), names, "validation"),
                "references_calibration": hv(refs, names, "calibration"),
            },
        }
        emit(summary)
        marks = [25, 50, 100, 150, 200, 250, 300, 400, 500]
        for run_dir in [store.root, *map(Path, args.compare)]:
            other = RunStore(run_dir)
            other.require()
            o_meta = other.read_json(other.root / "meta.json") or {}
            o_cfg = load_config(other.config_path)
            emit(
                {
                    "kind": "curve",
                    "run_dir": str(other.root),
                    "driver": o_meta.get("driver"),
                    "sampler": getattr(o_cfg.driver.options, "sampler", None),
                    "ranges": {k: list(v) for k, v in o_cfg.space.ranges.items()},
                    "evaluations": len(other.read_log()),
                    "hypervolume_at": hv_curve(other.read_log(), names, marks),
                }
            )
    finally:
        scorer.close()
        if out_f:
            out_f.close()

    if args.png:
        figure(Path(args.png), store, names, refs, grid, args.compare)
    return 0


def _label(store) -> str:
    from evomerge.config import load_config

    cfg = load_config(store.config_path)
    sampler = getattr(cfg.driver.options, "sampler", None)
    name = {"nsga2": "NSGA-II", "nsga3": "NSGA-III", "tpe": "TPE"}.get(sampler, sampler or cfg.driver.name)
    ranges = ", ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in cfg.space.ranges.items())
    return f"{name}{f' ({ranges})' if ranges else ''}"


def figure(path: Path, store, names: list[str], refs: list[dict], grid: list[dict], compare: list[str]) -> None:
    """The run's evaluations and front, the references, the grid and each compared run's front."""
    from evomerge.pareto import nondominated
    from evomerge.report.plots import plot_pareto
    from evomerge.runs.store import RunStore, as_float

    def points(records):
        return [
            tuple(as_float(r["objectives"][n]) for n in names)
            for r in records
            if r.get("status") == "ok" and all(n in (r.get("objectives") or {}) for n in names)
        ]

    overlay = {"untuned task arithmetic grid": [tuple(p["calibration"][n] for n in names) for p in grid]}
    for run_dir in compare:
        other = RunStore(run_dir)
        recs = other.read_log()
        pts = points(recs)  # only its front: hundreds of dominated points would hide the main run
        front = [pts[i] for i in nondominated(np.array(pts, dtype=float).reshape(-1, len(names)))]
        overlay[f"{_label(other)}: front of {len(recs)} evals"] = front
    records = store.read_log()
    plot_pareto(
        records,
        names,
        {n: "maximize" for n in names},
        path,
        references={r["name"]: tuple(r["calibration"][n] for n in names) for r in refs},
        overlay=overlay,
        title=f"{names[0]} vs {names[1]} (calibration): red = {_label(store)}, {len(records)} evaluations",
        dpi=80,
    )


def replot(args) -> int:
    """``--replot JSONL``: redraw the figure from a previous run of this script (no scoring)."""
    from evomerge.runs.store import RunStore

    lines = [json.loads(x) for x in Path(args.replot).read_text().splitlines() if x.strip()]
    refs = [x for x in lines if x["kind"] == "reference"]
    grid = next(x for x in lines if x["kind"] == "grid")["points"]
    names = next(x for x in lines if x["kind"] == "summary")["objectives"]
    figure(Path(args.png), RunStore(args.run_dir), names, refs, grid, args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
