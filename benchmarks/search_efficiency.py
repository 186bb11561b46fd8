"""Search efficiency on the toy world: best score against evaluations, per driver and per space.

Every search is a real run of the product (:func:`evomerge.runs.api.run`, what ``evomerge run``
calls) on the toy world's target task (L2 addition: "math in the other language"), in-process and
seeded, with early stopping off so that every candidate costs the same (one teacher-forced pass
over the calibration split). Two comparisons at equal evaluation budgets:

* **drivers** on the parameter space (task arithmetic, one weight per expert per layer group, the
  embeddings and the norm + head as groups of their own): CMA-ES, M2N2, Optuna TPE, random;
* **spaces** with CMA-ES: ``ps`` (that same parameter space), ``dfs`` (data-flow space over the two
  experts' layers, embeddings / head from the language expert), ``psdfs`` (the joint space: a
  data-flow path over a parameter-space merge and the math expert, searched together).

For each run the log gives the curve ``evaluations → best-so-far calibration score``; the
incumbent at a few checkpoints and the final best are scored on the held-out validation split
(disjoint from calibration) with the same merge worker the run uses. Baselines on the validation
split: the base, each expert, and untuned merges (task arithmetic 0.5/0.5 and 1/1, TIES and
DARE-TIES with density 0.5).

Search settings are the product's defaults (x0 = 0.5, σ0 = 1/6, CMA-ES population 4 + ⌊3 ln n⌋)
apart from: parameter-space genes are only the parameters the method reads (task arithmetic: the
weights), M2N2's archive starts from uniform draws, and the data-flow scales are one per layer
(``--scale-mode``) so that 200 evaluations are not spread over M² scale genes.

Output: one JSON line per run (kind ``run``) and per baseline (kind ``baseline``), then a
``summary`` line (mean ± std over seeds of the held-out target score per driver and space, and
whether the goal holds: evolved ≥ best expert + 0.30 and > every untuned merge); ``--table``
prints the Markdown table of ``docs/results.md``; ``--out`` is the plot (mean ± std band over seeds).

    nice -n 10 .venv/bin/python benchmarks/search_efficiency.py --preset test --evals 30 --seeds 0 1 2
    nice -n 10 .venv/bin/python benchmarks/search_efficiency.py --preset demo --evals 200 --table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The benchmark runs from a checkout: make the repo's packages importable without an install.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from json_lines import JsonLines  # noqa: E402  (a sibling script's module)

#: Driver labels → (driver name, options). M2N2 seeds its archive with uniform draws: from the
#: single ``x0`` default, crossover alone could only ever mix x0 with one random genome.
DRIVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "cmaes": ("cmaes", {}),
    "m2n2": ("m2n2", {"initial": "random"}),
    "optuna-tpe": ("optuna", {"sampler": "tpe"}),
    "random": ("random", {}),
}
SPACES = ("ps", "dfs", "psdfs")
SPACE_KIND = {"ps": "parameter", "dfs": "dataflow", "psdfs": "psdfs"}

#: Untuned merges: (label, method, per-model parameters, global parameters).
UNTUNED = [
    ("task_arithmetic 0.5/0.5", "task_arithmetic", {"weight": 0.5}, {}),
    ("task_arithmetic 1/1", "task_arithmetic", {"weight": 1.0}, {}),
    ("ties d=0.5", "ties", {"weight": 1.0, "density": 0.5}, {}),
    ("dare_ties d=0.5 w=0.5", "dare_ties", {"weight": 0.5, "density": 0.5}, {}),
    ("dare_ties d=0.5 w=1", "dare_ties", {"weight": 1.0, "density": 0.5}, {}),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=["demo", "test"], default="demo", help="toy world preset (default demo)")
    p.add_argument(
        "--world-dir",
        default=None,
        metavar="DIR",
        help="use the complete toy world in DIR (its manifest's settings) instead of --preset; "
        "runs then name its models and tasks explicitly (models: + fitness:)",
    )
    p.add_argument("--evals", type=int, default=200, help="evaluations per run (default 200)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds (default 0 1 2)")
    p.add_argument(
        "--drivers",
        nargs="*",
        default=list(DRIVERS),
        help=f"drivers compared on the parameter space (default: {' '.join(DRIVERS)}); "
        "also optuna-<sampler>, e.g. optuna-gp",
    )
    p.add_argument(
        "--spaces",
        nargs="*",
        default=list(SPACES),
        choices=SPACES,
        help="spaces compared with CMA-ES (default: ps dfs psdfs)",
    )
    p.add_argument("--method", default="task_arithmetic", help="merge method of the parameter space")
    p.add_argument(
        "--weight-max",
        type=float,
        default=1.0,
        help="upper end of the searched weight range [0, W] (default 1: the space's own range)",
    )
    p.add_argument("--layer-groups", type=int, default=None, help="layer groups (default: one per layer)")
    p.add_argument("--repeats", type=int, default=2, help="data-flow repeats r (default 2)")
    p.add_argument(
        "--scale-mode",
        choices=["matrix", "per_layer", "none"],
        default="per_layer",
        help="data-flow input scales (default per_layer: M genes instead of M², for small budgets)",
    )
    p.add_argument(
        "--checkpoints",
        type=int,
        nargs="*",
        default=None,
        help="evaluation counts at which the incumbent is scored on the held-out split "
        "(default: 10, 25, 50, 100, 200, ... up to --evals)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="examples per forward pass (default 256)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine more threads only contend)",
    )
    p.add_argument("--work-dir", default=None, help="where run directories go (default: a temporary directory)")
    p.add_argument("--out", default="/tmp/evomerge-bench/search_efficiency.png", help="plot path (PNG)")
    p.add_argument("--jsonl", default=None, help="also write the JSON lines to this file")
    p.add_argument("--table", action="store_true", help="print the Markdown table to stderr at the end")
    p.add_argument(
        "--from-jsonl",
        default=None,
        metavar="PATH",
        help="no runs: re-make the summary, table and plot from a saved --jsonl file",
    )
    args = p.parse_args(argv)
    for d in args.drivers:
        driver_spec(d)  # unknown labels fail before any work
    if args.evals < 1:
        p.error("--evals must be >= 1")
    return args


def driver_spec(label: str) -> tuple[str, dict[str, Any]]:
    if label in DRIVERS:
        name, opts = DRIVERS[label]
        return name, dict(opts)
    if label.startswith("optuna-"):
        return "optuna", {"sampler": label.removeprefix("optuna-")}
    raise SystemExit(f"error: unknown driver label {label!r} (known: {', '.join(DRIVERS)}, optuna-<sampler>)")


def default_checkpoints(evals: int) -> list[int]:
    pts = [n for n in (10, 25, 50, 100, 200, 400, 800, 1600) if n < evals]
    return sorted(set(pts + [evals]))


# ---------------------------------------------------------------------------------------------
def run_config(args, world, space: str, driver: str, seed: int) -> dict[str, Any]:
    name, options = driver_spec(driver)
    layers = int(world.settings.layers)
    sp: dict[str, Any] = {"kind": SPACE_KIND[space]}
    if space in ("ps", "psdfs"):
        from evomerge.merge.methods import get_method

        spec = get_method(args.method)
        # Only parameters the method reads are genes (task arithmetic ignores density).
        params = [p for p in ("weight", "density") if p in spec.model_params and p not in spec.inert_params]
        sp.update(method=args.method, layer_groups=args.layer_groups or layers, params=params)
        if args.weight_max != 1.0:
            sp["ranges"] = {"weight": [0.0, float(args.weight_max)]}
    if space in ("dfs", "psdfs"):
        sp.update(repeats=args.repeats, scale_mode=args.scale_mode)
        # The target is asked and answered in L2: frame the path with the language expert (the
        # paper's model A, the Japanese model); in psdfs the frame is the PS merge itself.
        if space == "dfs" and "lang" in world.experts:
            sp["embed_from"] = "lang"
        if space == "psdfs" and "math" in world.experts:
            sp["embed_from"] = "lang"  # the expert folded into the merge; 'math' keeps its own layers
    if args.world_dir:
        source = {
            "models": {"base": str(world.base), "experts": {k: str(v) for k, v in world.experts.items()}},
            "fitness": world.fitness_config([world.target_task]),
        }
    else:
        source = {"toyworld": {"preset": args.preset}}
    return {
        "description": f"search_efficiency {space} {driver} seed {seed}",
        **source,
        "space": sp,
        "driver": {"name": name, "options": options},
        "budget": {"max_evals": int(args.evals)},
        "evaluator": {"backend": "inprocess", "device": "cpu", "batch_size": int(args.batch_size)},
        "run": {"seed": int(seed), "checkpoint_every": "generation"},
    }


def read_log(run_dir: Path) -> list[dict]:
    with open(run_dir / "evaluations.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def best_so_far(records: list[dict]) -> tuple[list[float], list[int]]:
    """Best calibration score after each evaluation, and the incumbent's index after each."""
    best, curve, inc, idx = -math.inf, [], [], -1
    for i, r in enumerate(records):
        s = r.get("score")
        if r.get("status") == "ok" and s is not None and float(s) > best:
            best, idx = float(s), i
        curve.append(best if idx >= 0 else float("nan"))
        inc.append(idx)
    return curve, inc


class HeldOut:
    """Scores recipes and checkpoints on the validation split with the run's own merge worker."""

    def __init__(self, world, batch_size: int, tasks: list[str]):
        from evomerge.demo import world_worker_spec
        from evomerge.evaluator import InProcessBackend
        from evomerge.fitness import Fitness, parse_fitness_config

        self.tasks = tasks
        cfg = parse_fitness_config(world.fitness_config(tasks))
        self.fitness = Fitness(cfg)
        self.batch_size = batch_size
        self.backend = InProcessBackend(world_worker_spec(world, cfg.model_dump(mode="json"), batch_size=batch_size))
        self._next_id = 0

    def recipe(self, recipe: dict, split: str = "validation") -> dict[str, float]:
        from evomerge.evaluator import EvalRequest

        self._next_id += 1
        self.backend.submit(EvalRequest(self._next_id, recipe, split, None))
        (res,) = self.backend.wait()
        if not res.ok:
            raise RuntimeError(f"{split} evaluation failed: {res.error_line}")
        return {k: float(v) for k, v in res.objectives.items()}

    def checkpoint(self, path: Path) -> dict[str, float]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(str(path))
        with torch.no_grad():
            res = self.fitness.evaluate(model, tok, "validation", batch_size=self.batch_size, early_stopping=False)
        return {o.task: float(o.value) for o in res.objectives}

    def close(self) -> None:
        self.backend.close()


def baselines(world, held: HeldOut) -> list[dict]:
    out = [{"kind": "baseline", "name": "base", "validation": held.checkpoint(world.base)}]
    for name, path in world.experts.items():
        out.append({"kind": "baseline", "name": f"expert:{name}", "validation": held.checkpoint(path)})
    experts = [str(p) for p in world.experts.values()]
    for label, method, mp, gp in UNTUNED:
        recipe = {
            "merge_method": method,
            "base_model": str(world.base),
            "models": [{"model": e, "parameters": dict(mp)} for e in experts],
            "parameters": dict(gp),
            "dtype": "float32",
            "seed": 0,
        }
        out.append(
            {"kind": "baseline", "name": f"untuned:{label}", "recipe": recipe, "validation": held.recipe(recipe)}
        )
    return out


def one_run(args, world, held: HeldOut, held_target: HeldOut, space: str, driver: str, seed: int, work: Path) -> dict:
    from evomerge.config import parse_config
    from evomerge.runs.api import run

    run_dir = work / f"{space}-{driver}-s{seed}"
    cfg = parse_config(run_config(args, world, space, driver, seed), f"search_efficiency {space}/{driver}")
    t0 = time.perf_counter()
    run(cfg, run_dir, progress=False)
    wall = time.perf_counter() - t0
    records = read_log(run_dir)
    curve, inc = best_so_far(records)
    target = world.target_task
    checkpoints = [n for n in (args.checkpoints or default_checkpoints(args.evals)) if 1 <= n <= len(records)]
    cache: dict[int, float] = {}
    held_curve = []
    t1 = time.perf_counter()
    for n in checkpoints:
        i = inc[n - 1]
        if i < 0:
            held_curve.append(None)
            continue
        if i not in cache:
            cache[i] = held_target.recipe(records[i]["recipe"])[target]
        held_curve.append(cache[i])
    final_i = inc[-1]
    final = None
    if final_i >= 0:
        rec = records[final_i]
        # Every task on the final best: does it still do each expert's own skill?
        final = {"id": rec["id"], "calibration": rec["objectives"], "validation": held.recipe(rec["recipe"])}
        # The run itself scores its best on the validation split too: it must agree with ours.
        own = json.loads((run_dir / "validation.json").read_text()).get("objectives") or {}
        final["run_validation"] = own
    evals_s = [float(r.get("merge_seconds") or 0) + float(r.get("eval_seconds") or 0) for r in records]
    return {
        "kind": "run",
        "preset": args.preset,
        "space": space,
        "driver": driver,
        "seed": seed,
        "evals": len(records),
        "failed": sum(1 for r in records if r.get("status") != "ok"),
        "dim": len(records[0]["genome"]) if records and isinstance(records[0].get("genome"), list) else None,
        "curve": {"evals": list(range(1, len(records) + 1)), "best_calibration": [round(c, 6) for c in curve]},
        "heldout_curve": {"evals": checkpoints, target: held_curve},
        "final": final,
        "seconds": {
            "run": round(wall, 2),
            "per_eval": round(float(np.mean(evals_s)), 4) if evals_s else None,
            "heldout": round(time.perf_counter() - t1, 2),
        },
        "run_dir": str(run_dir),
    }


# ---------------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarize(runs: list[dict], base: list[dict], target: str) -> dict:
    experts = {b["name"]: b["validation"][target] for b in base if b["name"].startswith("expert:")}
    untuned = {b["name"]: b["validation"][target] for b in base if b["name"].startswith("untuned:")}
    best_expert = max(experts.values()) if experts else float("nan")
    best_untuned = max(untuned.values()) if untuned else float("nan")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["space"], r["driver"]), []).append(r)
    rows = []
    for (space, driver), rs in groups.items():
        vals = [r["final"]["validation"][target] for r in rs if r["final"]]
        cal = [r["curve"]["best_calibration"][-1] for r in rs]
        m, s = mean_std(vals) if vals else (float("nan"), 0.0)
        rows.append(
            {
                "space": space,
                "driver": driver,
                "seeds": [r["seed"] for r in rs],
                "evals": rs[0]["evals"],
                "heldout_target_mean": round(m, 4),
                "heldout_target_std": round(s, 4),
                "heldout_target_per_seed": [round(v, 4) for v in vals],
                "calibration_best_mean": round(float(np.mean(cal)), 4),
                "margin_over_best_expert": round(m - best_expert, 4),
                "margin_over_best_untuned": round(m - best_untuned, 4),
                "goal": bool(m >= best_expert + 0.30 and m > best_untuned),
                "seconds_per_run": round(float(np.mean([r["seconds"]["run"] for r in rs])), 1),
            }
        )
    return {
        "kind": "summary",
        "target": target,
        "best_expert": best_expert,
        "best_untuned": best_untuned,
        "rows": rows,
        "goal_any": any(r["goal"] for r in rows),
    }


def markdown(summary: dict, base: list[dict], tasks: list[str]) -> str:
    t = summary["target"]
    lines = [f"| model | {' | '.join(f'{x} (held-out)' for x in tasks)} |", "|---|" + "---|" * len(tasks)]
    for b in base:
        lines.append(
            f"| {b['name']} | " + " | ".join(f"{b['validation'].get(x, float('nan')):.3f}" for x in tasks) + " |"
        )
    lines += [
        "",
        f"| space | driver | evals | held-out {t} (mean ± std) | per seed | best calibration | vs best expert | vs best untuned | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['space']} | {r['driver']} | {r['evals']} | {r['heldout_target_mean']:.3f} ± {r['heldout_target_std']:.3f} | "
            f"{', '.join(f'{v:.3f}' for v in r['heldout_target_per_seed'])} | {r['calibration_best_mean']:.3f} | "
            f"{r['margin_over_best_expert']:+.3f} | {r['margin_over_best_untuned']:+.3f} | {'yes' if r['goal'] else 'no'} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("ps", "drivers on the parameter space", lambda r: r["space"] == "ps", "driver"),
        ("cmaes", "spaces with CMA-ES", lambda r: r["driver"] == "cmaes", "space"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    target = summary["target"]
    for ax, (_, name, keep, by) in zip(axes, panels):
        groups: dict[str, list[dict]] = {}
        for r in runs:
            if keep(r):
                groups.setdefault(r[by], []).append(r)
        for i, (label, rs) in enumerate(groups.items()):
            color = f"C{i}"
            n = min(len(r["curve"]["best_calibration"]) for r in rs)
            ys = np.array([r["curve"]["best_calibration"][:n] for r in rs], dtype=float)
            x = np.arange(1, n + 1)
            m, s = np.nanmean(ys, axis=0), np.nanstd(ys, axis=0)
            ax.plot(x, m, color=color, label=label)
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.18, linewidth=0)
            hx = rs[0]["heldout_curve"]["evals"]
            hy = np.array([[np.nan if v is None else v for v in r["heldout_curve"][target]] for r in rs], dtype=float)
            if hy.size:
                ax.errorbar(
                    hx,
                    np.nanmean(hy, axis=0),
                    yerr=np.nanstd(hy, axis=0),
                    color=color,
                    fmt="o--",
                    markersize=3.5,
                    linewidth=0.8,
                    capsize=2,
                )
        ax.axhline(summary["best_expert"], color="k", linestyle=":", linewidth=1, label="best expert")
        ax.axhline(summary["best_untuned"], color="0.5", linestyle="-.", linewidth=1, label="best untuned merge")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel(f"{target} exact match")
    fig.suptitle(
        f"{title}\nsolid: best-so-far on calibration (mean ± std over seeds); "
        "dots: the incumbent on held-out validation; lines: held-out baselines",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def replot(args) -> int:
    lines = [json.loads(x) for x in Path(args.from_jsonl).read_text().splitlines() if x.strip()]
    world = next(x for x in lines if x["kind"] == "world")
    base = [x for x in lines if x["kind"] == "baseline"]
    runs = [x for x in lines if x["kind"] == "run"]
    target = next((x["target"] for x in lines if x["kind"] == "summary"), "target")
    summary = summarize(runs, base, target)
    print(json.dumps(summary))
    evals = max(r["evals"] for r in runs)
    seeds = sorted({r["seed"] for r in runs})
    plot(
        runs,
        summary,
        Path(args.out),
        f"toy world ({world['preset']}): {evals} evaluations, seeds {' '.join(map(str, seeds))}",
    )
    print(f"plot: {args.out}", file=sys.stderr)
    if args.table:
        print(markdown(summary, base, list(base[0]["validation"])), file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_jsonl:
        return replot(args)
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from evomerge.toyworld import build_toyworld

    t_start = time.perf_counter()
    if args.world_dir:
        from evomerge.errors import EvomergeError
        from evomerge.toyworld import open_toyworld

        try:
            world = open_toyworld(args.world_dir, log=lambda m: print(m, file=sys.stderr))
        except EvomergeError as exc:
            raise SystemExit(f"error: {exc}") from None
        args.preset = f"dir:{Path(args.world_dir).name}"
    else:
        world = build_toyworld(preset=args.preset, log=lambda m: print(m, file=sys.stderr))
    emit = JsonLines(args.jsonl)

    emit(
        {
            "kind": "world",
            "preset": args.preset,
            "key": world.key,
            "root": str(world.root),
            "layers": world.settings.layers,
            "hidden": world.settings.hidden,
            "calibration": world.settings.calibration,
            "validation": world.settings.validation,
        }
    )
    tasks = [world.target_task] + sorted(set(world.expert_skills.values()) - {world.target_task})
    held = HeldOut(world, args.batch_size, tasks)
    held_target = HeldOut(world, args.batch_size, [world.target_task])
    base = baselines(world, held)
    for b in base:
        emit(b)
    jobs = [("ps", d) for d in args.drivers] + [
        (s, "cmaes") for s in args.spaces if s != "ps" or "cmaes" not in args.drivers
    ]
    tmp = None
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="evomerge-search-eff-")
        work = Path(tmp.name)
    runs = []
    try:
        for space, driver in jobs:
            for seed in args.seeds:
                r = one_run(args, world, held, held_target, space, driver, seed, work)
                runs.append(r)
                emit(r)
                print(
                    f"[{time.perf_counter() - t_start:7.1f}s] {space}/{driver} seed {seed}: "
                    f"calibration {r['curve']['best_calibration'][-1]:.3f}, held-out {world.target_task} "
                    f"{(r['final'] or {}).get('validation', {}).get(world.target_task, float('nan')):.3f} "
                    f"({r['seconds']['run']:.0f} s)",
                    file=sys.stderr,
                )
    finally:
        held.close()
        held_target.close()
        if tmp is not None:
            tmp.cleanup()
    summary = summarize(runs, base, world.target_task)
    summary["seconds_total"] = round(time.perf_counter() - t_start, 1)
    emit(summary)
    plot(
        runs,
        summary,
        Path(args.out),
        f"toy world ({args.preset}): {args.evals} evaluations, seeds {' '.join(map(str, args.seeds))}",
    )
    print(f"plot: {args.out}", file=sys.stderr)
    if args.table:
        print(markdown(summary, base, held.tasks), file=sys.stderr)
    emit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
