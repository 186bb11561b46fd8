"""M2N2 on scikit-learn's digits, from two pre-trained experts (Abrantes et al., GECCO 2025).

Compares, at a budget of ``--passes`` forward passes (default 10 000; one pass = one genome over
the 1437 training images, see :mod:`evomerge.toyworld.digits`):

* ``m2n2``: M2N2 with α = 1, attraction, SLERP split-point crossover (split anywhere), archive 20,
  no mutation, archive seeded with the two experts;
* ``ga``: the α = 0 ablation without attraction (plain GA: parents ∝ raw training accuracy);
* ``slerp``: the best single SLERP of the two experts, t on a 101-point grid (101 passes),
  chosen on training accuracy;
* ``expert_a`` / ``expert_b``: the experts themselves.

Reported: test accuracy of the best-on-train genome (all candidates ever evaluated). One JSON line
per (method, seed) to stdout or ``--out``; ``--table`` prints a Markdown table of mean ± std.

    nice -n 10 .venv/bin/python benchmarks/m2n2_digits.py --seeds 0 1 2 --out results.jsonl --table
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from evomerge.drivers import make_driver
from evomerge.drivers.base import Outcome
from evomerge.drivers.m2n2 import slerp_mix
from evomerge.toyworld.digits import DigitsProblem

METHODS = {
    "m2n2": {"alpha": 1.0, "attraction": True},
    "ga": {"alpha": 0.0, "attraction": False},
}


def run_m2n2(problem: DigitsProblem, seed: int, passes: int, *, batch: int = 1, **options) -> dict:
    driver = make_driver(
        "m2n2",
        problem.space,
        seed=seed,
        archive_size=20,
        split="any",
        crossover="slerp",
        initial=problem.experts,
        **options,
    )
    start = problem.forward_passes
    best_train, best_genome, curve = -1.0, None, []
    while problem.forward_passes - start < passes:
        cands = driver.ask(min(batch, passes - (problem.forward_passes - start)))
        outs = []
        for c in cands:
            correct = problem.train_correct(c.genome)
            acc = float(correct.mean())
            if acc > best_train:
                best_train, best_genome = acc, c.genome
            outs.append(Outcome(c.id, np.array([acc]), per_example=correct.astype(float)))
        driver.tell(cands, outs)
        used = problem.forward_passes - start
        if used % 1000 == 0:
            curve.append([used, best_train, problem.test_accuracy(best_genome)])
    return {"train_acc": best_train, "test_acc": problem.test_accuracy(best_genome), "curve": curve}


def run_slerp(problem: DigitsProblem, grid: int = 101) -> dict:
    a, b = problem.experts
    best = (-1.0, 0.0, None)
    for t in np.linspace(0.0, 1.0, grid):
        g = slerp_mix(a, b, t)
        acc = float(problem.train_correct(g).mean())
        if acc > best[0]:
            best = (acc, float(t), g)
    return {"train_acc": best[0], "t": best[1], "test_acc": problem.test_accuracy(best[2])}


def summarize(rows: list[dict]) -> str:
    order = ["m2n2", "ga", "slerp", "expert_a", "expert_b"]
    label = {
        "m2n2": "M2N2 (α = 1, attraction)",
        "ga": "GA (α = 0, no attraction)",
        "slerp": "best single SLERP of the experts",
        "expert_a": "expert A (digits 0-4)",
        "expert_b": "expert B (digits 5-9)",
    }
    paper = {"m2n2": "≈ 68.5", "ga": "≈ 52", "slerp": "≈ 57.7", "expert_a": "", "expert_b": ""}
    lines = ["| method | test acc. % (mean ± std) | train acc. % | seeds | paper % |", "|---|---|---|---|---|"]
    for m in order:
        sel = [r for r in rows if r["method"] == m]
        if not sel:
            continue
        te = np.array([r["test_acc"] for r in sel]) * 100
        tr = np.array([r["train_acc"] for r in sel]) * 100
        lines.append(
            f"| {label[m]} | {te.mean():.1f} ± {te.std(ddof=1) if len(te) > 1 else 0:.1f} "
            f"| {tr.mean():.1f} ± {tr.std(ddof=1) if len(tr) > 1 else 0:.1f} | {len(sel)} | {paper[m]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--passes", type=int, default=10_000)
    ap.add_argument("--methods", nargs="+", default=["m2n2", "ga", "slerp", "experts"])
    ap.add_argument("--out", default=None, help="append JSON lines here (default: stdout)")
    ap.add_argument("--table", action="store_true", help="print a Markdown table at the end")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = open(args.out, "a") if args.out else sys.stdout
    rows = []
    for seed in args.seeds:
        problem = DigitsProblem(seed)
        for method in args.methods:
            t0 = time.time()
            if method == "experts":
                results = []
                for name, g in zip(("expert_a", "expert_b"), problem.experts):
                    c = problem.train_correct(g)
                    results.append((name, {"train_acc": float(c.mean()), "test_acc": problem.test_accuracy(g)}))
            elif method == "slerp":
                results = [("slerp", run_slerp(problem))]
            else:
                results = [(method, run_m2n2(problem, seed, args.passes, **METHODS[method]))]
            for name, res in results:
                row = {
                    "method": name,
                    "seed": seed,
                    "passes": args.passes if name in METHODS else None,
                    "seconds": round(time.time() - t0, 1),
                    **res,
                }
                rows.append(row)
                out.write(json.dumps(row) + "\n")
                out.flush()
    if args.table:
        print(summarize(rows), file=sys.stderr if out is sys.stdout else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
