"""``evomerge demo``: the whole product on the embedded toy world, in a few CPU minutes.

1. build (or find in the cache) the toy world: a base and two experts — ``math`` (L1 addition,
   "English math") and ``lang`` (L2 tasks, "Japanese chat") — and the target task (L2 addition);
2. search per-layer task-arithmetic weights with CMA-ES on the target's calibration split, early
   stopping on;
3. score, on the held-out validation split of the target and of each expert's own skill: the
   base, each expert, untuned merges (task arithmetic ½/½, TIES, DARE-TIES) and the evolved merge;
   write ``summary.json`` and the HTML report.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from evomerge.config import parse_config

DEMO_MAX_EVALS = 300


def demo_config(world, preset: str, max_evals: int) -> dict[str, Any]:
    fitness = world.fitness_config([world.target_task])
    fitness["early_stopping"] = {"enabled": True}
    return {
        "description": "evomerge demo: per-layer task arithmetic weights, CMA-ES, toy world",
        "toyworld": {"preset": preset, "seed": 0},
        "space": {
            "kind": "parameter",
            "method": "task_arithmetic",
            "layer_groups": world.settings.layers,
            "params": ["weight"],
            "ranges": {"weight": [0.0, 1.5]},
        },
        "driver": {"name": "cmaes", "options": {}},
        "fitness": fitness,
        "budget": {"max_evals": max_evals},
        "run": {"seed": 0},
    }


def untuned_recipes(base: str, experts: dict[str, str]) -> dict[str, dict]:
    """Hand-set merges a user would try first (mergekit's usual starting values)."""

    def rec(method, params, global_params=None):
        return {
            "merge_method": method,
            "base_model": base,
            "models": [{"model": p, "parameters": dict(params)} for p in experts.values()],
            "parameters": dict(global_params or {}),
            "dtype": "float32",
        }

    half = 1.0 / len(experts)
    return {
        "task_arithmetic": rec("task_arithmetic", {"weight": half}),
        "ties": rec("ties", {"weight": 1.0, "density": 0.5}),
        "dare_ties": rec("dare_ties", {"weight": 1.0, "density": 0.5}),
    }


def single_model_recipe(base: str, experts: dict[str, str], keep: str | None) -> dict:
    """θ_0 + τ_keep exactly (or θ_0 when ``keep`` is None): task arithmetic with 0/1 weights."""
    return {
        "merge_method": "task_arithmetic",
        "base_model": base,
        "models": [{"model": p, "parameters": {"weight": 1.0 if name == keep else 0.0}} for name, p in experts.items()],
        "dtype": "float32",
    }


def world_worker_spec(world, fitness: dict, *, batch_size: int | None = None):
    """The run's own merge worker over the toy world's models, scoring ``fitness`` (a fitness
    config mapping) with early stopping off — what every held-out comparison must use."""
    from evomerge.evaluator.merge_worker import MergeWorkerSpec

    extra = {} if batch_size is None else {"batch_size": batch_size}
    return MergeWorkerSpec(
        base=str(world.base),
        experts=[str(p) for p in world.experts.values()],
        fitness=fitness,
        device="cpu",
        early_stopping=False,
        **extra,
    )


def heldout_scores(world, recipes: dict[str, dict], log=None) -> dict[str, dict[str, float]]:
    """{label: {task: held-out score}} for the target and every expert's skill task."""
    from evomerge.evaluator import EvalRequest, InProcessBackend

    tasks = [world.target_task] + [t for t in dict.fromkeys(world.expert_skills.values()) if t != world.target_task]
    backend = InProcessBackend(world_worker_spec(world, world.fitness_config(tasks)))
    out = {}
    try:
        for i, (label, recipe) in enumerate(recipes.items()):
            backend.submit(EvalRequest(i, recipe, "validation", None))
            res = backend.wait()[0]
            if not res.ok:
                raise RuntimeError(f"held-out scoring of {label} failed: {res.error_line}")
            out[label] = {t: res.objectives[t] for t in tasks}
            if log:
                log(f"held-out {label}: " + ", ".join(f"{t}={v:.3f}" for t, v in out[label].items()))
    finally:
        backend.close()
    return out


def run_demo(
    run_dir: str | Path | None = None, *, preset: str = "demo", max_evals: int | None = None, progress: bool = True
) -> Path:
    from evomerge.report import report
    from evomerge.runs.api import run
    from evomerge.runs.plan import build_plan
    from evomerge.runs.store import RunStore
    from evomerge.runs.summary import best_record
    from evomerge.toyworld import build_toyworld

    def log(m):
        print(m, file=sys.stderr)

    from evomerge.errors import ConfigError

    t0 = time.time()
    if max_evals is not None and max_evals < 1:
        raise ConfigError(f"demo: --max-evals must be >= 1, got {max_evals}")
    run_dir = Path(run_dir) if run_dir else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    RunStore(run_dir).check_fresh()  # before the world is built or the search planned
    log("toy world: building or loading from the cache ...")
    world = build_toyworld(preset=preset, seed=0, log=log)
    cfg = parse_config(demo_config(world, preset, DEMO_MAX_EVALS if max_evals is None else max_evals), "demo config")
    plan = build_plan(cfg, source="demo config")
    log(
        f"search: CMA-ES over {plan.problem.space.dim} per-layer task-arithmetic weights, {cfg.budget.max_evals} evaluations"
    )
    run(cfg, run_dir, plan=plan, progress=progress)
    store = RunStore(run_dir)
    records = store.read_log()
    best = best_record(records)
    base = str(world.base)
    experts = {k: str(v) for k, v in world.experts.items()}
    recipes = {"base": single_model_recipe(base, experts, None)}
    for name in experts:
        recipes[f"expert:{name}"] = single_model_recipe(base, experts, name)
    for label, r in untuned_recipes(base, experts).items():
        recipes[f"untuned:{label}"] = r
    if best is not None:
        recipes["evolved"] = best["recipe"]
    scores = heldout_scores(world, recipes, log=log)
    store.write_json(
        store.summary_path,
        {
            "target_task": world.target_task,
            "expert_skills": dict(world.expert_skills),
            "models": scores,
            "evolved_id": None if best is None else best["id"],
            "evaluations": len(records),
            "wall_seconds": round(time.time() - t0, 1),
        },
    )
    return report(run_dir)
