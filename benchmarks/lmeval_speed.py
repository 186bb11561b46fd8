"""lm-eval objectives vs native scorers: seconds per candidate evaluation, same task, same computation.

The toy world's target task (L2 addition; ``demo`` preset by default), written as a JSONL file
and three harness tasks over it (:mod:`evomerge.testing.lmeval_tasks`): ``generate_until`` vs the
native greedy ``exact_match`` (generation vs generation), ``loglikelihood`` (acc = is-greedy) vs
``exact_match_forced`` (teacher forcing vs teacher forcing; the harness also takes a
log-softmax) and ``multiple_choice`` vs ``choice_loglik`` (log-likelihood vs log-likelihood).
Each "candidate" is one evaluation of the calibration split on the next of the world's models
(base, experts in turn, through one engine rebound each time — what a worker does); the native and
harness paths alternate within every round and the median over rounds is kept. ``--legacy`` also
times the harness's own ``simple_evaluate`` per candidate (what ``fitness/lmeval.py`` did before).

    python benchmarks/lmeval_speed.py [--preset demo] [--calibration 200] [--rounds 5] [--legacy]

One JSON line per kind: seconds per evaluation (native, harness, ratio), whether every
per-example score was identical, and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from evomerge.fitness import Fitness, generators
from evomerge.fitness.engines import HFEngine
from evomerge.fitness.lmeval_requests import make_lm
from evomerge.testing.lmeval_tasks import choice_rows, paired_tasks, write_harness_tasks
from evomerge.toyworld import build_toyworld


def legacy_seconds(engine, task, docs) -> float:
    """One candidate the way the adapter did it before: the harness's whole loop."""
    from lm_eval import simple_evaluate

    harness = task.scorer.harness
    start = time.perf_counter()
    simple_evaluate(
        model=make_lm(engine),
        tasks=[harness.name],
        task_manager=legacy_seconds.manager,
        samples={harness.name: sorted(docs)},
        log_samples=True,
        bootstrap_iters=0,
    )
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--kinds", default="gen,ll,mc")
    ap.add_argument("--legacy", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    world = build_toyworld(preset=args.preset, log=None)
    models = [AutoModelForCausalLM.from_pretrained(str(p)).eval() for p in [world.base, *world.experts.values()]]
    tok = AutoTokenizer.from_pretrained(str(world.tokenizer))
    kinds = args.kinds.split(",")
    folder = Path(tempfile.mkdtemp(prefix="lmeval_speed_"))
    tasks_dir = write_harness_tasks(folder, choice_rows(generators.get("toyworld.target")()))
    splits = {"calibration": args.calibration, "validation": 0, "seed": 0}
    t0 = time.perf_counter()
    fit = Fitness.from_dict({"tasks": paired_tasks(kinds, splits)}, base_dir=folder)
    load_s = time.perf_counter() - t0
    if args.legacy:
        from lm_eval.tasks import TaskManager

        legacy_seconds.manager = TaskManager(include_path=str(tasks_dir), include_defaults=False)
    engine = HFEngine(models[0], tok)
    for kind in kinds:
        h, n = fit.tasks[f"h_{kind}"], fit.tasks[f"n_{kind}"]
        examples = {"h": h.examples("calibration"), "n": n.examples("calibration")}
        start = time.perf_counter()
        h.score(engine, examples["h"], batch_size=args.batch_size)  # the once-per-worker build
        first_s = time.perf_counter() - start
        times = {"n": [], "h": [], "legacy": []}
        identical = True
        for r in range(args.rounds):
            for m, model in enumerate(models):
                engine.rebind(model)
                scores = {}
                for side, task in (("n", n), ("h", h)) if (r + m) % 2 == 0 else (("h", h), ("n", n)):
                    start = time.perf_counter()
                    scores[side] = task.score(engine, examples[side], batch_size=args.batch_size).scores
                    times[side].append(time.perf_counter() - start)
                identical &= scores["n"] == scores["h"]
                if args.legacy and r == 0:
                    times["legacy"].append(legacy_seconds(engine, h, [int(e.id) for e in examples["h"]]))
        native, harness = statistics.median(times["n"]), statistics.median(times["h"])
        row = {
            "bench": "lmeval_speed",
            "world": args.preset,
            "kind": {"gen": "generate_until", "ll": "loglikelihood", "mc": "multiple_choice"}[kind],
            "native": n.cfg.scorer.type,
            "examples": len(examples["h"]),
            "batch_size": args.batch_size,
            "native_s": round(native, 4),
            "harness_s": round(harness, 4),
            "ratio": round(harness / native, 3),
            "first_harness_s": round(first_s, 3),
            "identical_scores": identical,
            "evaluations": len(times["h"]),
            "fitness_load_s": round(load_s, 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        if times["legacy"]:
            row["simple_evaluate_s"] = round(statistics.median(times["legacy"]), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
