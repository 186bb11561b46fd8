"""M2N2 over merge recipes vs CMA-ES, TPE and random search on the toy world's multi-skill objective.

Every search is a real run of the product — ``evomerge run`` on ``experiments/toy-multiskill-*.yaml``
(the toy world's ``math``, ``lang`` and ``target`` tasks as three maximised objectives; per-layer-
group task-arithmetic weights, 12 genes) — with only the seed, the budget, the evaluator's batch
size and (``--preset``) the world changed. At most ``--jobs`` runs at once (default 2), each on one
torch thread. Single-objective drivers (M2N2, CMA-ES, random) are told the sum of the three task
scores; TPE is multi-objective (the product's default for several objectives). M2N2 competes over
the 600 per-example scores of all three calibration splits at once.

Two measures, at equal evaluations:

* **mean over tasks** — of the run's best candidate (highest sum on calibration), scored on the
  held-out validation splits of the three tasks (disjoint from calibration) with the run's own
  merge worker; also of the incumbent after 10, 25, 50, 100, 200, … evaluations;
* **hypervolume** of the front over the three tasks (reference point 0; all scores are in [0, 1],
  so 1 is the unit cube): on calibration, of every candidate evaluated so far (a curve), and
  held-out, of the final calibration front's members scored on the validation splits.

Baselines on the same held-out splits: the base, each expert, untuned merges (task arithmetic ½/½
and 1/1, TIES, DARE-TIES), and the hypervolume of all of them together.

Driver labels: ``m2n2``, ``cmaes``, ``tpe``, ``random`` run ``experiments/toy-multiskill-LABEL.yaml``
as is; a variant is ``LABEL=NAME:JSON`` (that driver with those options, on the same world and
space), e.g. ``m2n2-s0.1=m2n2:{"initial":"seeded","mutation_std":0.1}``; the built-in variants
are :data:`VARIANTS`.

Output: one JSON line per baseline, per run (``kind: run``) and a ``summary``; ``--table`` prints
the Markdown tables of ``docs/results.md``, ``--out`` draws the figure (mean ± std over seeds).

    nice -n 10 .venv/bin/python benchmarks/m2n2_recipes.py --seeds 0 1 2 --evals 300 \\
        --jsonl m2n2_recipes.jsonl --out docs/m2n2_recipes.png --table
    .venv/bin/python benchmarks/m2n2_recipes.py --from-jsonl m2n2_recipes.jsonl --out docs/m2n2_recipes.png --table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
for _p in (str(_ROOT), str(_HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from json_lines import JsonLines  # noqa: E402  (a sibling script's module)

EXPERIMENTS = _ROOT / "experiments"
DEFAULT_LABELS = ["m2n2", "cmaes", "tpe", "random"]
#: Ablations and fairness checks, by label (driver name, options).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # today's setting: archive of 20 uniform draws, no mutation
    "m2n2-random": ("m2n2", {"archive_size": 20, "initial": "random"}),
    # the seeds without mutation: the archive cannot leave their span
    "m2n2-seeded-s0": ("m2n2", {"archive_size": 20, "initial": "seeded"}),
    "m2n2-seeded-s0.01": ("m2n2", {"archive_size": 20, "initial": "seeded", "mutation_std": 0.01}),
    "m2n2-seeded-s0.1": ("m2n2", {"archive_size": 20, "initial": "seeded", "mutation_std": 0.1}),
    "m2n2-seeded-adapt": (
        "m2n2",
        {"archive_size": 20, "initial": "seeded", "mutation_std": 0.05, "mutation_adapt": "one_fifth"},
    ),
    "m2n2-seeded+15": ("m2n2", {"archive_size": 20, "initial": "seeded", "initial_random": 15, "mutation_std": 0.05}),
    "m2n2-seeded-alpha0": ("m2n2", {"archive_size": 20, "initial": "seeded", "mutation_std": 0.05, "alpha": 0.0}),
    # CMA-ES started at the uniform seed (task arithmetic ½/½) instead of the box centre
    "cmaes-x0-uniform": ("cmaes", {"x0": "uniform"}),
}
OBJECTIVES = ["math", "lang", "target"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", help="toy world preset (default demo)")
    p.add_argument("--evals", type=int, default=300, help="evaluations per run (default 300)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds (default 0 1 2)")
    p.add_argument(
        "--drivers",
        nargs="*",
        default=None,
        help=f"driver labels (default: {' '.join(DEFAULT_LABELS)}; see the module docstring); with --from-jsonl: "
        "only these runs",
    )
    p.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per forward pass (default 256)")
    p.add_argument("--no-front", action="store_true", help="skip the held-out scoring of the final fronts")
    p.add_argument("--work-dir", default=None, help="where run directories go (default: a temporary directory)")
    p.add_argument("--out", default="/tmp/evomerge-bench/m2n2_recipes.png", help="figure path (PNG)")
    p.add_argument("--jsonl", default=None, help="also write the JSON lines to this file")
    p.add_argument("--table", action="store_true", help="print the Markdown tables to stderr at the end")
    p.add_argument("--from-jsonl", default=None, metavar="PATH", help="no runs: summary, table and figure from a file")
    args = p.parse_args(argv)
    args.specs = {
        label: driver_spec(label) for label in args.drivers or DEFAULT_LABELS
    }  # unknown labels fail before any work
    if args.evals < 1 or args.jobs < 1:
        p.error("--evals and --jobs must be >= 1")
    return args


def driver_spec(label: str) -> tuple[str, dict[str, Any] | None]:
    """(label's driver name, options) — options None: the experiment file's own driver section."""
    name, _, spec = label.partition("=")
    if spec:
        drv, _, opts = spec.partition(":")
        try:
            return drv, json.loads(opts) if opts else {}
        except json.JSONDecodeError as exc:
            raise SystemExit(f"error: driver label {label!r}: options are not JSON ({exc})") from None
    if name in VARIANTS:
        drv, opts = VARIANTS[name]
        return drv, dict(opts)
    if (EXPERIMENTS / f"toy-multiskill-{name}.yaml").exists():
        return name, None
    known = ", ".join(DEFAULT_LABELS + list(VARIANTS))
    raise SystemExit(f"error: unknown driver label {label!r} (known: {known}, or LABEL=NAME:JSON)")


def label_name(label: str) -> str:
    return label.partition("=")[0]


def run_config(
    label: str, spec: tuple[str, dict | None], world, seed: int, evals: int, batch: int, preset: str
) -> dict:
    """The experiment file's config for this label, on ``world`` (one layer group per layer)."""
    name, options = spec
    base = "m2n2" if options is not None else label_name(label)
    cfg = yaml.safe_load((EXPERIMENTS / f"toy-multiskill-{base}.yaml").read_text())
    layers = int(world.settings.layers)
    cfg["space"]["layer_groups"] = layers
    if options is not None:
        if options.get("x0") == "uniform":  # the uniform seed's genome: weight 0.5 in the space's range
            lo, hi = cfg["space"]["ranges"]["weight"]
            options = {**options, "x0": [(0.5 - lo) / (hi - lo)] * ((layers + 2) * len(world.experts))}
        cfg["driver"] = {"name": name, "options": options}
    cfg["toyworld"]["preset"] = preset
    cfg["description"] = f"m2n2_recipes {label_name(label)} seed {seed}"
    cfg["budget"] = {"max_evals": int(evals)}
    cfg["run"] = {"seed": int(seed)}
    cfg["evaluator"] = {"backend": "inprocess", "device": "cpu", "batch_size": int(batch)}
    return cfg


# ---------------------------------------------------------------------------------------------
def front_hv(values: np.ndarray) -> float:
    from evomerge.pareto import hypervolume

    return float(hypervolume(values, np.zeros(values.shape[1]))) if len(values) else 0.0


def checkpoints(evals: int) -> list[int]:
    return sorted({n for n in (10, 25, 50, 100, 200, 400, 800) if n < evals} | {evals})


_WORKER: dict[str, Any] = {}


def _held(preset: str, batch: int):
    """This process's held-out scorer (built once) and its recipe cache."""
    if "held" not in _WORKER:
        from search_efficiency import HeldOut

        from evomerge.toyworld import build_toyworld

        world = build_toyworld(preset=preset, log=lambda m: None)
        _WORKER["held"] = HeldOut(world, batch, OBJECTIVES)
        _WORKER["cache"] = {}
    held, cache = _WORKER["held"], _WORKER["cache"]

    def score(recipe: dict) -> dict[str, float]:
        key = json.dumps(recipe, sort_keys=True)
        if key not in cache:
            cache[key] = held.recipe(recipe)
        return cache[key]

    return score


def one_run(job: dict) -> dict:
    """Run one search with ``evomerge run`` and measure it (in a worker process)."""
    import torch

    torch.set_num_threads(1)
    from search_efficiency import best_so_far, read_log

    run_dir = Path(job["run_dir"])
    # beside the run directory (not with_suffix: a label such as m2n2-seeded-s0.1 has a dot)
    cfg_path, log_path = run_dir.parent / f"{run_dir.name}.yaml", run_dir.parent / f"{run_dir.name}.log"
    cfg_path.write_text(yaml.safe_dump(job["config"], sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.run(
            [sys.executable, "-m", "evomerge", "run", str(cfg_path), "--run-dir", str(run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=_ROOT,
        ).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"evomerge run failed (exit {rc}): see {log_path}")
    records = read_log(run_dir)
    n_obj = len(OBJECTIVES)
    curve, inc = best_so_far(records)
    ok = [(i, r) for i, r in enumerate(records) if r.get("status") == "ok"]
    vals = np.array([[float(r["objectives"][t]) for t in OBJECTIVES] for _, r in ok])
    pos = np.array([i for i, _ in ok])
    hv_x = list(range(10, len(records) + 1, 10))
    if not hv_x or hv_x[-1] != len(records):
        hv_x.append(len(records))
    hv_cal = [round(front_hv(vals[pos < n]), 6) for n in hv_x]
    score = _held(job["preset"], job["batch_size"])
    t1 = time.perf_counter()
    pts = [n for n in checkpoints(job["evals"]) if n <= len(records)]
    held_mean = []
    for n in pts:
        i = inc[n - 1]
        held_mean.append(None if i < 0 else round(float(np.mean(list(score(records[i]["recipe"]).values()))), 6))
    rec = records[inc[-1]]
    final_val = score(rec["recipe"])
    own = json.loads((run_dir / "validation.json").read_text()).get("objectives") or {}
    front = None
    if not job["no_front"]:
        from evomerge.pareto import nondominated

        idx = nondominated(vals)
        held_pts = [score(records[pos[k]]["recipe"]) for k in idx]
        held_vals = np.array([[h[t] for t in OBJECTIVES] for h in held_pts])
        front = {
            "ids": [int(records[pos[k]]["id"]) for k in idx],
            "calibration": vals[idx].round(6).tolist(),
            "heldout": held_vals.round(6).tolist(),
            "hv_calibration": round(front_hv(vals[idx]), 6),
            "hv_heldout": round(front_hv(held_vals), 6),
        }
    origins: dict[str, int] = {}
    for r in records:
        o = (r.get("meta") or {}).get("origin", "?")
        origins[o] = origins.get(o, 0) + 1
    return {
        "kind": "run",
        "preset": job["preset"],
        "driver": job["label"],
        "driver_section": job["config"]["driver"],
        "seed": job["seed"],
        "evals": len(records),
        "failed": len(records) - len(ok),
        "origins": origins,
        "curve": {"best_mean_calibration": [round(c / n_obj, 6) for c in curve]},
        "hv_curve": {"evals": hv_x, "calibration": hv_cal},
        "heldout_curve": {"evals": pts, "mean": held_mean},
        "final": {
            "id": int(rec["id"]),
            "meta": rec.get("meta"),
            "calibration": {t: float(rec["objectives"][t]) for t in OBJECTIVES},
            "heldout": final_val,
            "heldout_mean": round(float(np.mean([final_val[t] for t in OBJECTIVES])), 6),
            "run_validation": own,
        },
        "front": front,
        "seconds": {"run": round(wall, 1), "measure": round(time.perf_counter() - t1, 1)},
        "run_dir": str(run_dir),
    }


# ---------------------------------------------------------------------------------------------
def summarize(runs: list[dict], base: list[dict]) -> dict:
    from search_efficiency import mean_std

    untuned = [b for b in base if b["name"].startswith("untuned:")]
    sources = [b for b in base if not b["name"].startswith("untuned:")]
    mean_of = {b["name"]: float(np.mean([b["validation"][t] for t in OBJECTIVES])) for b in base}
    baseline_hv = front_hv(np.array([[b["validation"][t] for t in OBJECTIVES] for b in base]))
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["preset"], r["driver"]), []).append(r)
    rows = []
    for (preset, label), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        held = [r["final"]["heldout_mean"] for r in rs]
        row = {
            "preset": preset,
            "driver": label,
            "seeds": [r["seed"] for r in rs],
            "evals": rs[0]["evals"],
            "heldout_mean": [round(v, 4) for v in mean_std(held)],
            "heldout_mean_per_seed": [round(v, 4) for v in held],
            "heldout_per_task": {
                t: round(float(np.mean([r["final"]["heldout"][t] for r in rs])), 4) for t in OBJECTIVES
            },
            "calibration_mean": round(float(np.mean([r["curve"]["best_mean_calibration"][-1] for r in rs])), 4),
            "hv_calibration": [round(v, 4) for v in mean_std([r["hv_curve"]["calibration"][-1] for r in rs])],
            "hv_calibration_per_seed": [round(r["hv_curve"]["calibration"][-1], 4) for r in rs],
            "seconds_per_run": round(float(np.mean([r["seconds"]["run"] for r in rs])), 1),
            # the run scores its best on the validation split itself: it must agree with the benchmark
            "run_validation_agrees": all(_agrees(r["final"]) for r in rs),
        }
        for n in (50, 100):
            if n in rs[0]["heldout_curve"]["evals"]:
                k = rs[0]["heldout_curve"]["evals"].index(n)
                row[f"heldout_mean_at_{n}"] = round(float(np.mean([r["heldout_curve"]["mean"][k] for r in rs])), 4)
        if all(r["front"] for r in rs):
            row["hv_heldout"] = [round(v, 4) for v in mean_std([r["front"]["hv_heldout"] for r in rs])]
            row["hv_heldout_per_seed"] = [round(r["front"]["hv_heldout"], 4) for r in rs]
            row["front_size"] = round(float(np.mean([len(r["front"]["ids"]) for r in rs])), 1)
        rows.append(row)
    return {
        "kind": "summary",
        "objectives": OBJECTIVES,
        "baseline_heldout_mean": {k: round(v, 4) for k, v in mean_of.items()},
        "best_source_mean": round(max(mean_of[b["name"]] for b in sources), 4),
        "best_untuned_mean": round(max(mean_of[b["name"]] for b in untuned), 4) if untuned else None,
        "baseline_hv_heldout": round(baseline_hv, 4),
        "rows": rows,
        "goals": goals(rows),
    }


def _agrees(final: dict) -> bool:
    own = final.get("run_validation") or {}
    return all(abs(float(own.get(t, np.nan)) - float(final["heldout"][t])) < 1e-9 for t in OBJECTIVES)


def goals(rows: list[dict]) -> dict:
    """M2N2 ≥ CMA-ES (mean over seeds) and ≫ random (above it on every seed, by ≥ 0.05 on average),
    per world and measure; None where a driver is missing."""
    out: dict[str, Any] = {}
    for preset in sorted({r["preset"] for r in rows}):
        by = {r["driver"]: r for r in rows if r["preset"] == preset}
        if not {"m2n2", "cmaes", "random"} <= set(by):
            continue
        m, c, rnd = by["m2n2"], by["cmaes"], by["random"]
        res = {}
        for key in ("heldout_mean", "hv_calibration", "hv_heldout"):
            if key not in m or key not in c or key not in rnd:
                continue
            ms, rs = m[f"{key}_per_seed"], rnd[f"{key}_per_seed"]
            res[key] = {
                "m2n2_minus_cmaes": round(m[key][0] - c[key][0], 4),
                "m2n2_minus_random": round(m[key][0] - rnd[key][0], 4),
                "ge_cmaes": bool(m[key][0] >= c[key][0]),
                "gg_random": bool(m[key][0] - rnd[key][0] >= 0.05 and all(a > b for a, b in zip(ms, rs))),
            }
        out[preset] = res
    return out


def markdown(summary: dict, base: list[dict]) -> str:
    cols = " | ".join(f"{t} (held-out)" for t in OBJECTIVES)
    lines = [f"| model | {cols} | mean |", "|---|" + "---|" * (len(OBJECTIVES) + 1)]
    for b in base:
        v = b["validation"]
        lines.append(
            f"| {b['name']} | "
            + " | ".join(f"{v[t]:.3f}" for t in OBJECTIVES)
            + f" | {np.mean([v[t] for t in OBJECTIVES]):.3f} |"
        )
    lines.append(f"| *all of the above: hypervolume* | | | | {summary['baseline_hv_heldout']:.3f} |")
    lines += [
        "",
        "| world | driver | evals | held-out mean over tasks (mean ± std) | per seed | math / lang / target | "
        "after 50 / 100 | HV calibration | HV held-out | per seed (held-out) | front |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pm(v):
        return f"{v[0]:.3f} ± {v[1]:.3f}" if v else "–"

    for r in summary["rows"]:
        ht = r["heldout_per_task"]
        lines.append(
            f"| {r['preset']} | {r['driver']} | {r['evals']} | {pm(r['heldout_mean'])} | "
            f"{', '.join(f'{v:.3f}' for v in r['heldout_mean_per_seed'])} | "
            f"{' / '.join(f'{ht[t]:.3f}' for t in OBJECTIVES)} | "
            f"{r.get('heldout_mean_at_50', float('nan')):.3f} / {r.get('heldout_mean_at_100', float('nan')):.3f} | "
            f"{pm(r['hv_calibration'])} | {pm(r.get('hv_heldout'))} | "
            f"{', '.join(f'{v:.3f}' for v in r.get('hv_heldout_per_seed', []))} | {r.get('front_size', '–')} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = sorted({r["preset"] for r in runs})
    fig, axes = plt.subplots(len(presets), 2, figsize=(11, 4.2 * len(presets)), squeeze=False)
    labels = list(dict.fromkeys(r["driver"] for r in runs))
    for row, preset in zip(axes, presets):
        ax_m, ax_h = row
        for i, label in enumerate(labels):
            rs = [r for r in runs if r["driver"] == label and r["preset"] == preset]
            if not rs:
                continue
            color = f"C{i}"
            n = min(len(r["curve"]["best_mean_calibration"]) for r in rs)
            ys = np.array([r["curve"]["best_mean_calibration"][:n] for r in rs], dtype=float)
            x = np.arange(1, n + 1)
            m, s = ys.mean(axis=0), ys.std(axis=0)
            ax_m.plot(x, m, color=color, label=label)
            ax_m.fill_between(x, m - s, m + s, color=color, alpha=0.15, linewidth=0)
            hx = rs[0]["heldout_curve"]["evals"]
            hy = np.array([[np.nan if v is None else v for v in r["heldout_curve"]["mean"]] for r in rs], dtype=float)
            ax_m.errorbar(hx, np.nanmean(hy, axis=0), yerr=np.nanstd(hy, axis=0), color=color, fmt="o--",
                          markersize=3.5, linewidth=0.8, capsize=2)  # fmt: skip
            hvx = rs[0]["hv_curve"]["evals"]
            hv = np.array([r["hv_curve"]["calibration"] for r in rs], dtype=float)
            ax_h.plot(hvx, hv.mean(axis=0), color=color, label=label)
            ax_h.fill_between(hvx, hv.mean(axis=0) - hv.std(axis=0), hv.mean(axis=0) + hv.std(axis=0),
                              color=color, alpha=0.15, linewidth=0)  # fmt: skip
            if all(r["front"] for r in rs):
                h = [r["front"]["hv_heldout"] for r in rs]
                ax_h.errorbar([hvx[-1] + 4 + 2 * i], [np.mean(h)], yerr=[np.std(h)], color=color, fmt="o",
                              markersize=4, capsize=2)  # fmt: skip
        ax_m.axhline(summary["best_untuned_mean"], color="0.5", linestyle="-.", linewidth=1, label="best untuned merge")
        ax_m.axhline(summary["best_source_mean"], color="k", linestyle=":", linewidth=1, label="best source (base)")
        ax_h.axhline(summary["baseline_hv_heldout"], color="0.5", linestyle="-.", linewidth=1,
                     label="sources + untuned merges")  # fmt: skip
        ax_m.set_title(f"{preset}: mean over math, lang, target", fontsize=10)
        ax_h.set_title(f"{preset}: hypervolume of the front (3 tasks, ref 0)", fontsize=10)
        for ax in row:
            ax.set_xlabel("evaluations")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        ax_m.set_ylabel("exact match")
        ax_h.set_ylabel("hypervolume")
    fig.suptitle(
        f"{title}\nsolid: calibration (mean ± std over seeds); dots: held-out (left: the incumbent; right: "
        "the final front); lines: held-out baselines",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(runs: list[dict], base: list[dict], args, emit) -> None:
    summary = summarize(runs, base)
    emit(summary)
    evals = max(r["evals"] for r in runs)
    seeds = sorted({r["seed"] for r in runs})
    plot(runs, summary, Path(args.out), f"toy world, multi-skill objective: {evals} evaluations, seeds {seeds}")
    print(f"figure: {args.out}", file=sys.stderr)
    if args.table:
        print(markdown(summary, base), file=sys.stderr)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_jsonl:
        lines = [json.loads(x) for x in Path(args.from_jsonl).read_text().splitlines() if x.strip()]
        keep = {label_name(d) for d in args.drivers} if args.drivers else None
        runs = [x for x in lines if x["kind"] == "run" and (keep is None or x["driver"] in keep)]
        report(runs, [x for x in lines if x["kind"] == "baseline"], args, lambda o: print(json.dumps(o)))
        return 0
    import torch

    torch.set_num_threads(1)
    from search_efficiency import UNTUNED, baselines

    from evomerge.toyworld import build_toyworld

    t_start = time.perf_counter()
    world = build_toyworld(preset=args.preset, log=lambda m: print(m, file=sys.stderr))
    emit = JsonLines(args.jsonl)

    emit({"kind": "world", "preset": args.preset, "key": world.key, "untuned": [u[0] for u in UNTUNED]})
    _held(args.preset, args.batch_size)
    base = baselines(world, _WORKER["held"])  # scored on exactly the three objectives' tasks
    for b in base:
        emit(b)
    tmp = None
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="evomerge-m2n2-recipes-")
        work = Path(tmp.name)
    jobs = [
        {
            "label": label_name(label),
            "seed": seed,
            "preset": args.preset,
            "evals": args.evals,
            "batch_size": args.batch_size,
            "no_front": args.no_front,
            "config": run_config(label, spec, world, seed, args.evals, args.batch_size, args.preset),
            "run_dir": str(work / f"{args.preset}-{label_name(label)}-s{seed}"),
        }
        for seed in args.seeds
        for label, spec in args.specs.items()
    ]
    _WORKER.pop("held").close()  # the workers build their own scorers
    _WORKER.clear()
    runs = []
    try:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(one_run, job): job for job in jobs}
            for fut in as_completed(futures):
                r = fut.result()
                runs.append(r)
                emit(r)
                print(
                    f"[{time.perf_counter() - t_start:7.1f}s] {r['driver']} seed {r['seed']}: held-out mean "
                    f"{r['final']['heldout_mean']:.3f}, HV calibration {r['hv_curve']['calibration'][-1]:.3f}"
                    + (f", held-out {r['front']['hv_heldout']:.3f}" if r["front"] else "")
                    + f" ({r['seconds']['run']:.0f} s + {r['seconds']['measure']:.0f} s)",
                    file=sys.stderr,
                )
    finally:
        if tmp is not None:
            tmp.cleanup()
    order = {label_name(k): i for i, k in enumerate(args.specs)}
    runs.sort(key=lambda r: (order[r["driver"]], r["seed"]))
    report(runs, base, args, emit)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    emit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
