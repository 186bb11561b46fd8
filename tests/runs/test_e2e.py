"""A short search on tiny Llama models, end to end: the run directory's files, the three exports,
and the HF export scoring exactly what the log says; then the report."""

import json

import numpy as np
import pytest
import yaml

from evomerge.cli import main
from evomerge.config import load_config
from evomerge.runs.api import run
from evomerge.runs.store import RunStore
from evomerge.runs.summary import best_record


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_llama_family):
    from runs_helpers import tiny_config

    from evomerge.runs.merge import MergeProblem

    root = tmp_path_factory.mktemp("e2e")
    cfg_path = tiny_config(root, tiny_llama_family)
    real = MergeProblem.to_recipe

    def counting(self, genome):
        TO_RECIPE_CALLS.append(tuple(np.asarray(genome, dtype=float)))
        return real(self, genome)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MergeProblem, "to_recipe", counting)
        run(load_config(cfg_path), root / "run", config_path=cfg_path, progress=False)
    return root, root / "run"


#: genomes turned into recipes during the fixture's run
TO_RECIPE_CALLS: list[tuple] = []


def test_each_candidate_s_recipe_is_built_once(finished_run):
    """The request's recipe is the log record's: one genome → recipe conversion per candidate."""
    records = RunStore(finished_run[1]).read_log()
    assert len(TO_RECIPE_CALLS) == len(records) == 8
    assert len(set(TO_RECIPE_CALLS)) == 8


def test_run_directory_holds_log_checkpoints_best_and_pareto(finished_run):
    _, run_dir = finished_run
    store = RunStore(run_dir)
    records = store.read_log()
    assert [r["id"] for r in records] == list(range(8))
    assert all(r["status"] == "ok" and r["split"] == "calibration" for r in records)
    for r in records:  # NLL objectives are minimised: values are their negation, score the weighted sum
        assert r["values"] == pytest.approx([-r["objectives"]["add"], -r["objectives"]["copy"]])
        assert r["score"] == pytest.approx(-r["objectives"]["add"] - 0.5 * r["objectives"]["copy"])
        assert len(r["per_example"]["add"]) == 12 and len(r["per_example"]["copy"]) == 6
        assert r["recipe"]["merge_method"] == "ties"
    assert [p.name for p in sorted((run_dir / "checkpoints").glob("ckpt-*.pkl"))] == [
        "ckpt-00000004.pkl",
        "ckpt-00000008.pkl",
    ]
    best = best_record(records)
    assert yaml.safe_load((run_dir / "best" / "recipe.yaml").read_text()) == best["recipe"]
    pareto = json.loads((run_dir / "pareto.json").read_text())
    front_ids = {m["id"] for m in pareto["front"]}
    assert best["id"] in front_ids
    vals = {r["id"]: np.array(r["values"]) for r in records}
    for i in front_ids:  # nothing in the log dominates a front member
        assert not any(np.all(v >= vals[i]) and np.any(v > vals[i]) for v in vals.values())
    status = json.loads(_cli_out(["status", str(run_dir), "--json"]))
    assert status["evaluations"] == 8 and status["failed"] == 0 and status["pareto_size"] == len(front_ids)
    assert status["best"]["id"] == best["id"] and status["best"]["objectives"] == best["objectives"]
    assert set(status["best"]["validation"]) == {"add", "copy"}  # held-out scores computed at the end


def _cli_out(argv, capsys=None):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return buf.getvalue()


def test_three_exports_and_the_hf_model_scores_what_the_log_says(finished_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evomerge.fitness import Fitness, parse_fitness_config
    from evomerge.merge.formats import from_mergekit
    from evomerge.merge.recipes.parameter import Recipe

    root, run_dir = finished_run
    best = best_record(RunStore(run_dir).read_log())
    _cli_out(["export", str(run_dir), "--which", "best", "--format", "recipe", "-o", str(root / "best.yaml")])
    assert Recipe.from_yaml(root / "best.yaml") == Recipe.model_validate(best["recipe"])
    _cli_out(["export", str(run_dir), "--format", "mergekit", "-o", str(root / "best.mergekit.yaml")])
    assert from_mergekit((root / "best.mergekit.yaml").read_text()).merge_method == "ties"
    _cli_out(["export", str(run_dir), "--which", str(best["id"]), "--format", "hf", "-o", str(root / "hf")])
    model = AutoModelForCausalLM.from_pretrained(root / "hf").eval()
    tok = AutoTokenizer.from_pretrained(root / "hf")
    cfg = load_config(root / "run.yaml")
    fit = Fitness(parse_fitness_config(cfg.fitness, base_dir=root))
    res = fit.evaluate(model, tok, "calibration", early_stopping=False)
    assert {o.task: o.value for o in res.objectives} == pytest.approx(best["objectives"], rel=1e-5, abs=1e-6)
    paths = _cli_out(
        ["export", str(run_dir), "--which", "pareto", "--format", "recipe", "-o", str(root / "front")]
    ).split()
    assert len(paths) == json.loads(_cli_out(["status", str(run_dir), "--json"]))["pareto_size"]


def test_report_is_one_self_contained_page(finished_run):
    _, run_dir = finished_run
    index = _cli_out(["report", str(run_dir)]).strip()
    html = open(index).read()
    # held-out scores of the evolved candidate (validation.json), progress, Pareto front, recipe heatmap
    assert html.count("data:image/png;base64,") == 4
    assert 'src="http' not in html and "<link" not in html
    for name in ("heldout.png", "progress.png", "pareto.png", "recipe_heatmap.png"):
        assert (run_dir / "report" / name).exists()
