"""The merge worker on the joint PS+DFS space: sources stay resident, model A is re-merged in place.

Every candidate of the joint space carries a different nested PS recipe for model A. The worker
must read each checkpoint from disk once for its whole life (not once per candidate) and still
score each candidate exactly as a worker built fresh for it does.
"""

import numpy as np
import pytest
import transformers
from runs_helpers import tiny_config

from evomerge.config import load_config
from evomerge.evaluator import EvalRequest, Worker
from evomerge.runs.plan import build_plan


@pytest.fixture(scope="module")
def joint_plan(tiny_llama_family, tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    path = tiny_config(
        root,
        tiny_llama_family,
        space={"kind": "psdfs", "method": "ties", "layer_groups": 2, "params": ["weight", "density"], "repeats": 2},
        evaluator={"device": "cpu"},
    )
    plan = build_plan(load_config(path), source=str(path), config_dir=root)
    assert type(plan.problem.space).__name__ == "JointSpace"
    rng = np.random.default_rng(0)
    lo, hi = plan.problem.space.lower, plan.problem.space.upper
    genomes = [plan.problem.space.x0] + [rng.uniform(lo, hi) for _ in range(2)]
    recipes = [plan.problem.to_recipe(g) for g in genomes]
    # the nested PS recipe of model A differs between every pair of candidates
    nested = [r["sources"]["merged"] for r in recipes]
    assert nested[0] != nested[1] != nested[2] != nested[0]
    return plan, recipes


def test_joint_space_loads_each_checkpoint_once_and_scores_like_a_fresh_worker(joint_plan, monkeypatch):
    plan, recipes = joint_plan
    loads = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, ref, *args, **kwargs):
        loads.append(str(ref))
        return real(cls, ref, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    worker = Worker(plan.problem.worker_spec, worker_id="resident")
    built = list(loads)
    results = [worker.evaluate(EvalRequest(i, r, "calibration", None)) for i, r in enumerate(recipes)]
    assert all(r.ok for r in results), [r.error for r in results]
    # the base (the live model, which is model A) at build, then expert e2 (the other source) once
    assert built == [str(plan.problem.models["base"])]
    assert loads == built + [str(plan.problem.models["experts"]["e2"])]

    for i, (recipe, res) in enumerate(zip(recipes, results)):
        fresh = Worker(plan.problem.worker_spec, worker_id="fresh").evaluate(
            EvalRequest(i, recipe, "calibration", None)
        )
        assert fresh.ok and res.objectives == fresh.objectives and res.per_example == fresh.per_example
    assert len({tuple(r.objectives.values()) for r in results}) == 3  # three different models were scored


def test_resident_sources_match_an_independently_loaded_path_model(joint_plan):
    """The in-place model A equals the nested recipe merged from scratch by the space's own loader."""
    import torch

    from evomerge.merge.dataflow.path_model import build_path_model, load_dataflow_sources
    from evomerge.merge.recipes import DataFlowRecipe

    plan, recipes = joint_plan
    evaluate = plan.problem.worker_spec.build()
    for i, recipe in enumerate(recipes):
        evaluate(EvalRequest(i, recipe, "calibration", None))  # leaves the live model at this recipe
        dfr = DataFlowRecipe.validate_dict(recipe)
        ours, _ = evaluate.live.build(dfr)
        ref = build_path_model(dfr, load_dataflow_sources(dfr, device="cpu", dtype=torch.float32))
        ids = torch.tensor([[3, 5, 7, 2, 9]])
        with torch.no_grad():
            assert torch.equal(ours(ids).logits, ref(ids).logits)
