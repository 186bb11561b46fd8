"""Busy fraction of N Ray actors under uneven evaluation times: our scheduler vs a
generation-synchronous pool.

Every mode evaluates the same synthetic workload on the same actor pool: candidate ``i`` sleeps
``d_i`` seconds, drawn from a heavy-tailed mix on [0.05, 0.5] s (80% quick, 20% several times
longer; :func:`evomerge.evaluator.synthetic.uneven_durations`), then scores a sphere function.

Modes:

* ``ours/random``, ``ours/m2n2`` — steady-state drivers under :class:`evomerge.scheduler.Scheduler`:
  a new candidate is asked the moment an actor frees;
* ``ours/cmaes`` — CMA-ES under the same scheduler; the driver itself needs whole generations, so
  the scheduler can only overlap what the algorithm allows (reported for honesty);
* ``sync/random`` — the generation-synchronous pool, the way mergekit-evolve schedules: ask a
  population, evaluate it on the pool, wait for all of it, tell, repeat.

busy fraction = Σ_candidates (time the actor spent on it) / (N × wall time), wall time from the
first submit to the last result. Prints JSON (and writes it with ``--out``).

    python benchmarks/scheduler_utilization.py --workers 4 --evals 240 --population 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

for _key, _value in {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(_key, _value)

from evomerge.drivers import make_driver  # noqa: E402
from evomerge.evaluator import EvalRequest, FunctionWorkerSpec  # noqa: E402
from evomerge.evaluator.synthetic import uneven_durations  # noqa: E402
from evomerge.objectives import Objectives  # noqa: E402
from evomerge.scheduler import Budget, Scheduler  # noqa: E402


class BoxSpace:
    """The unit box: all a driver needs from a search space."""

    def __init__(self, dim: int):
        self.dim = dim
        self.lower, self.upper = np.zeros(dim), np.ones(dim)
        self.x0, self.sigma0 = np.full(dim, 0.5), 1 / 6
        self.names = [f"x{i}" for i in range(dim)]
        self.group_boundaries = [0, dim // 2, dim]

    def to_recipe(self, genome):
        return {"genome": np.asarray(genome, dtype=float).tolist()}

    def from_recipe(self, recipe):
        return np.asarray(recipe["genome"], dtype=float)

    def describe(self):
        return {"kind": "box", "dim": self.dim}


def run_ours(driver, backend, durations, n_evals):
    def to_recipe(c):
        return {"genome": np.asarray(c.genome).tolist(), "sleep": float(durations[c.id])}

    objectives = Objectives([("score", "maximize", 1.0)])
    sched = Scheduler(driver, backend, objectives, budget=Budget(max_evals=n_evals), to_recipe=to_recipe)
    summary = sched.run(handle_sigint=False)
    return {
        "evaluations": summary.evaluated,
        "wall_seconds": summary.wall_seconds,
        "busy_seconds": summary.busy_seconds,
        "busy_fraction": summary.utilization,
    }


def run_sync(driver, backend, durations, n_evals, population):
    """ask(population) → submit all → wait for all → tell → repeat."""
    from evomerge.drivers.base import Outcome

    done, busy = 0, 0.0
    start = time.monotonic()
    while done < n_evals:
        cands = driver.ask(min(population, n_evals - done))
        for c in cands:
            backend.submit(
                EvalRequest(c.id, {"genome": np.asarray(c.genome).tolist(), "sleep": float(durations[c.id])})
            )
        results = {}
        while len(results) < len(cands):
            for r in backend.wait():
                results[r.candidate_id] = r
        busy += sum(r.busy_seconds for r in results.values())
        driver.tell(cands, [Outcome(c.id, np.array([results[c.id].objectives["score"]])) for c in cands])
        done += len(cands)
    wall = time.monotonic() - start
    return {
        "evaluations": done,
        "wall_seconds": wall,
        "busy_seconds": busy,
        "busy_fraction": busy / (backend.num_workers * wall),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--evals", type=int, default=240)
    p.add_argument("--population", type=int, default=8, help="generation size for sync/random and ours/cmaes")
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--address", default=None, help="Ray address (default: a private local Ray)")
    p.add_argument("--modes", default="ours/random,ours/m2n2,ours/cmaes,sync/random")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    from evomerge.evaluator.ray_connect import connect_ray
    from evomerge.evaluator.ray_pool import RayPoolBackend

    ray = connect_ray(args.address, num_cpus=args.workers if args.address is None else None)
    durations = uneven_durations(args.evals + 4 * args.population, seed=args.seed)
    spec = FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere")
    backend = RayPoolBackend(spec, num_workers=args.workers, num_cpus=1, num_gpus=0)
    # start every actor before timing anything
    for i in range(args.workers):
        backend.submit(EvalRequest(-1 - i, {"genome": [0.0], "sleep": 0.1}))
    while backend.pending():
        backend.wait()

    space = BoxSpace(args.dim)
    modes = {}
    try:
        for mode in args.modes.split(","):
            kind, name = mode.split("/")
            options = {"population_size": args.population} if name == "cmaes" else {}
            driver = make_driver(name, space, n_objectives=1, seed=args.seed, **options)
            if kind == "ours":
                modes[mode] = run_ours(driver, backend, durations, args.evals)
            else:
                modes[mode] = run_sync(driver, backend, durations, args.evals, args.population)
            print(
                f"{mode:12s} busy {modes[mode]['busy_fraction']:.3f}  wall {modes[mode]['wall_seconds']:.2f} s",
                file=sys.stderr,
            )
    finally:
        backend.close()
        if args.address is None:
            ray.shutdown()

    d = durations[: args.evals]
    report = {
        "benchmark": "scheduler_utilization",
        "workers": args.workers,
        "evaluations": args.evals,
        "population": args.population,
        "durations": {
            "min": float(d.min()),
            "mean": float(d.mean()),
            "max": float(d.max()),
            "p90": float(np.quantile(d, 0.9)),
        },
        "ideal_wall_seconds": float(d.sum() / args.workers),
        "modes": modes,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
