"""Sequential PS+DFS against PS alone at the same total budget, on the toy world.

Every search is a real run of the product (:func:`evomerge.runs.api.run`, in-process, seeded):

* ``sequential`` — ``experiments/toy-psdfs-sequential.yaml``: a PS stage of ``--ps`` evaluations,
  then a DFS stage of ``--dfs`` over its winner (model A) and the other expert;
* ``ps`` — the same parameter space and driver alone, ``--ps + --dfs`` evaluations;
* ``joint`` (``--joint``) — the joint PS+DFS space (``mode: joint``), ``--ps + --dfs`` evaluations.
* ``on_top`` (``--on-top``) — the paper's reading: a DFS stage alone (``space.model_a``) of
  ``--dfs`` evaluations over the finished ``ps`` run's winner (``--ps + --dfs + --dfs`` evaluations
  in all); it reuses the ``ps`` run of the same seed in ``--work-dir``.

Reported per run (one JSON line each): the best candidate's calibration score and its held-out
score (the run's own ``validation.json``: the validation split, disjoint from calibration); for the
sequential run also the PS stage's winner (calibration, held-out) and whether the DFS stage improved
on it. A ``summary`` line gives mean ± std over seeds.

    nice -n 10 .venv/bin/python benchmarks/psdfs_sequential.py --seeds 0 1 2 --joint --jsonl psdfs.jsonl
    .venv/bin/python benchmarks/psdfs_sequential.py --from-jsonl psdfs.jsonl      # the summary again
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

EXPERIMENT = _ROOT / "experiments" / "toy-psdfs-sequential.yaml"
PS_KEYS = ("method", "layer_groups", "params", "ranges")


def configs(args, seed: int, work: Path) -> dict[str, dict]:
    """The run configs of one seed, all from the experiment file (its PS options for ``ps``)."""
    seq = yaml.safe_load(EXPERIMENT.read_text())
    seq["toyworld"]["preset"] = args.preset
    seq["run"]["seed"] = seed
    seq["budget"] = {"stages": {"ps": args.ps, "dfs": args.dfs}}
    seq["evaluator"] = {"backend": "inprocess", "device": "cpu"}
    if args.layer_groups:
        seq["space"]["layer_groups"] = args.layer_groups
    total = {"max_evals": args.ps + args.dfs}
    ps = {**seq, "space": {"kind": "parameter", **{k: seq["space"][k] for k in PS_KEYS}}, "budget": total}
    out = {"sequential": seq, "ps": ps}
    if args.joint:
        out["joint"] = {**seq, "space": {**seq["space"], "mode": "joint"}, "budget": total}
    if args.on_top:
        dfs_space = {k: v for k, v in seq["space"].items() if k not in PS_KEYS}
        dfs_space["model_a"] = {"run_dir": str(work / f"ps-s{seed}")}
        out["on_top"] = {**seq, "space": dfs_space, "budget": {"max_evals": args.dfs}}
    return out


def one_run(name: str, data: dict, run_dir: Path) -> dict:
    from evomerge.config import parse_config
    from evomerge.runs.api import run
    from evomerge.runs.stages import build_run_plan
    from evomerge.runs.store import RunStore
    from evomerge.runs.summary import best_record

    cfg = parse_config(data, f"psdfs_sequential {name}")
    t0 = time.perf_counter()
    run(cfg, run_dir, progress=False)
    wall = time.perf_counter() - t0
    store = RunStore(run_dir)
    records = store.read_log()
    best = best_record(records)
    target = json.loads((run_dir / "meta.json").read_text())["target_task"]
    held = json.loads((run_dir / "validation.json").read_text())
    out = {
        "kind": "run",
        "form": name,
        "seed": cfg.run.seed,
        "evals": len(records),
        "best": {"id": best["id"], "calibration": best["objectives"][target], "heldout": held["objectives"][target]},
        "seconds": round(wall, 1),
    }
    stages = [(r.get("meta") or {}).get("stage") for r in records]
    if "dfs" in stages:
        from evomerge.runs.session import validate_record

        ps_store = store
        if "ps" not in stages:  # model A from a finished run (space.model_a)
            ps_store = RunStore(json.loads((run_dir / "meta.json").read_text())["stages"][1]["model_a"]["run_dir"])
        ps = best_record([r for r in ps_store.read_log() if (r.get("meta") or {}).get("stage", "ps") == "ps"])
        dfs = [r for r, s in zip(records, stages) if s == "dfs"]
        plan = build_run_plan(cfg, log=lambda m: None, store=store)
        if ps_store is not store:
            ps_held = json.loads(ps_store.validation_path.read_text())
            assert ps_held["id"] == ps["id"], "the PS run's validation.json is not about its best"
        else:
            ps_held = held if ps["id"] == best["id"] else validate_record(plan.problem, store, ps)
        out["ps_winner"] = {
            "id": ps["id"],
            "calibration": ps["objectives"][target],
            "heldout": ps_held["objectives"][target],
        }
        out["dfs"] = {
            "identity_equals_ps_winner": dfs[0]["per_example"] == ps["per_example"],
            "improved": best["score"] > ps["score"],
            "best_dfs_calibration": best_record(dfs)["objectives"][target],
            "path": [f"{s['model']}.{s['layer']}×{s['scale']:.3g}" for s in best_record(dfs)["recipe"]["path"]],
        }
    return out


def mean_std(values) -> list[float]:
    a = np.asarray(values, dtype=float)
    return [round(float(a.mean()), 4), round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 4)]


def summarize(runs: list[dict], args) -> dict:
    out = {"kind": "summary", "preset": args.preset, "budget": {"ps": args.ps, "dfs": args.dfs}, "forms": {}}
    out["seeds"] = sorted({r["seed"] for r in runs})
    for name in dict.fromkeys(r["form"] for r in runs):
        rs = sorted((r for r in runs if r["form"] == name), key=lambda r: r["seed"])
        form = out["forms"][name] = {
            "heldout": mean_std([r["best"]["heldout"] for r in rs]),
            "per_seed": [round(r["best"]["heldout"], 4) for r in rs],
            "calibration": mean_std([r["best"]["calibration"] for r in rs]),
        }
        if all("ps_winner" in r for r in rs):
            form["ps_winner_heldout"] = mean_std([r["ps_winner"]["heldout"] for r in rs])
            form["ps_winner_per_seed"] = [round(r["ps_winner"]["heldout"], 4) for r in rs]
            form["dfs_improved"] = [r["dfs"]["improved"] for r in rs]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ps", type=int, default=200, help="evaluations of the PS stage")
    p.add_argument("--dfs", type=int, default=100, help="evaluations of the DFS stage")
    p.add_argument("--layer-groups", type=int, default=None, help="PS layer groups (default: the experiment's 4)")
    p.add_argument("--joint", action="store_true", help="also the joint PS+DFS space at the same budget")
    p.add_argument("--on-top", action="store_true", help="also a DFS stage over the finished ps run's winner")
    p.add_argument("--forms", nargs="+", default=None, help="only these forms (sequential, ps, joint, on_top)")
    p.add_argument("--jsonl", default=None, help="also write the JSON lines here")
    p.add_argument("--work-dir", default=None, help="keep the run directories here")
    p.add_argument("--from-jsonl", default=None, help="only print the summary of the runs in this file")
    args = p.parse_args(argv)
    if args.from_jsonl:
        runs = [json.loads(x) for x in Path(args.from_jsonl).read_text().splitlines() if '"kind": "run"' in x]
        print(json.dumps(summarize(runs, args)))
        return 0
    import torch

    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="evomerge-psdfs-"))
    sink = open(args.jsonl, "a") if args.jsonl else None
    runs = []
    for seed in args.seeds:
        for name, data in configs(args, seed, work).items():
            if args.forms and name not in args.forms:
                continue
            r = one_run(name, data, work / f"{name}-s{seed}")
            runs.append(r)
            line = json.dumps(r)
            print(line, flush=True)
            if sink:
                sink.write(line + "\n")
                sink.flush()
    summary = summarize(runs, args)
    line = json.dumps(summary)
    print(line, flush=True)
    if sink:
        sink.write(line + "\n")
        sink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
