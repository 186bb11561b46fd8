"""Integration: the scheduler driving real merges of a tiny Llama family through the run's merge
worker, in-process and on Ray actors. Scores are checked against models loaded independently
from disk (a recipe that reduces to the base or to one expert must score exactly what that model
scores) and against each other across backends."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fitness")
worker_mod = pytest.importorskip("evomerge.evaluator.merge_worker")
pytest.importorskip("evomerge.merge.apply")

from evomerge.drivers.base import Candidate  # noqa: E402
from evomerge.evaluator import EvalRequest, InProcessBackend  # noqa: E402
from evomerge.objectives import Objectives  # noqa: E402
from evomerge.scheduler import Evaluated, Scheduler  # noqa: E402

# (weight of expert 1, weight of expert 2) per candidate; 0 and 1 reproduce source models
GENOMES = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.8, 0.3)]


class ListDriver:
    """Steady-state driver proposing a fixed list of genomes."""

    generational = False
    n_objectives = 1

    def __init__(self, genomes):
        self.genomes, self.next = [np.asarray(g, float) for g in genomes], 0
        self.told = {}

    def ask(self, n):
        out = []
        while self.next < len(self.genomes) and len(out) < n:
            out.append(Candidate(self.next, self.genomes[self.next]))
            self.next += 1
        return out

    def tell(self, candidates, outcomes):
        self.told.update({c.id: o for c, o in zip(candidates, outcomes)})

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.fixture(scope="module")
def world(tiny_llama_family, tmp_path_factory):
    root = tmp_path_factory.mktemp("fitness")
    rng = np.random.default_rng(0)
    with open(root / "add.jsonl", "w") as fh:
        for _ in range(24):
            a, b = rng.integers(10, 50, size=2)
            fh.write(json.dumps({"prompt": f"{a}+{b}=", "answer": str(a + b)}) + "\n")
    fitness = {
        "tasks": [
            {
                "name": "add",
                "source": {"type": "jsonl", "path": "add.jsonl"},
                "scorer": {"type": "nll"},
                "splits": {"calibration": 8, "validation": 8, "seed": 0},
            }
        ],
    }
    base = str(tiny_llama_family["base"])
    experts = [str(p) for p in tiny_llama_family["experts"]]
    spec = worker_mod.MergeWorkerSpec(
        base=base, experts=experts, fitness=fitness, fitness_base_dir=str(root), early_stopping=False, threads=1
    )

    def to_recipe(c):
        return {
            "merge_method": "task_arithmetic",
            "base_model": base,
            "models": [{"model": e, "parameters": {"weight": float(w)}} for e, w in zip(experts, c.genome)],
            "dtype": "float32",
        }

    return {"spec": spec, "to_recipe": to_recipe, "fitness": fitness, "root": root, "base": base, "experts": experts}


def reference_nll(path, world):
    """The calibration NLL of a checkpoint loaded straight from disk, without the merge engine."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evomerge.fitness import Fitness, parse_fitness_config

    fit = Fitness(parse_fitness_config(world["fitness"], base_dir=world["root"]))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        result = fit.evaluate(model, AutoTokenizer.from_pretrained(path), "calibration")
    return float(result.objectives[0].value)


def run(backend, world):
    driver, log = ListDriver(GENOMES), {}
    sched = Scheduler(driver, backend, Objectives([("add", "minimize", 1.0)]), to_recipe=world["to_recipe"])
    for event in sched.events():
        if isinstance(event, Evaluated):
            log[event.candidate.id] = event.scored.result
    return log, driver, sched.summary()


@pytest.fixture(scope="module")
def inprocess_log(world):
    backend = InProcessBackend(world["spec"])
    try:
        return run(backend, world)
    finally:
        backend.close()


def test_inprocess_merges_score_like_the_models_they_reduce_to(inprocess_log, world):
    log, driver, summary = inprocess_log
    assert summary.evaluated == len(GENOMES) and summary.failed == 0, [r.error_line for r in log.values()]
    assert sorted(log) == list(range(len(GENOMES)))
    assert log[0].objectives["add"] == pytest.approx(reference_nll(world["base"], world), abs=1e-5)
    assert log[1].objectives["add"] == pytest.approx(reference_nll(world["experts"][0], world), abs=1e-5)
    assert log[2].objectives["add"] == pytest.approx(reference_nll(world["experts"][1], world), abs=1e-5)
    # distinct recipes really were merged (not a stale model): their scores differ
    assert len({round(r.objectives["add"], 6) for r in log.values()}) == len(GENOMES)
    # minimise → the driver is told -NLL; the per-example vector has one entry per calibration example
    for cid, outcome in driver.told.items():
        assert outcome.values[0] == pytest.approx(-log[cid].objectives["add"])
        assert outcome.per_example.shape == (8,)
    assert all(r.merge_seconds > 0 and r.fitness is not None for r in log.values())


def test_a_broken_recipe_fails_and_the_live_model_recovers(world):
    backend = InProcessBackend(world["spec"])
    try:
        good = world["to_recipe"](Candidate(0, np.array([1.0, 0.0])))
        bad = dict(good, merge_method="no_such_method")
        for i, recipe in enumerate([good, bad, good]):
            backend.submit(EvalRequest(i, recipe))
        results = [r for _ in range(3) for r in backend.wait()]
    finally:
        backend.close()
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "no_such_method" in results[1].error_line
    assert results[2].objectives == results[0].objectives


@pytest.mark.ray
def test_ray_actors_score_exactly_what_the_inprocess_worker_scores(ray_session, inprocess_log, world):
    from evomerge.evaluator.ray_pool import RayPoolBackend

    backend = RayPoolBackend(world["spec"], num_workers=2, num_cpus=0.5)
    try:
        log, _, summary = run(backend, world)
    finally:
        backend.close()
    assert summary.failed == 0 and sorted(log) == list(range(len(GENOMES)))
    assert {r.worker.split("@")[0] for r in log.values()} <= {"ray-0.0", "ray-1.0"}
    ref = inprocess_log[0]
    for cid, result in log.items():
        assert result.objectives["add"] == pytest.approx(ref[cid].objectives["add"], abs=1e-6)
