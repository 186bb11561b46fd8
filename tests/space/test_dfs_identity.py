"""The paper's DFS initialisation: a data-flow run starts at model A's own path, and that first
candidate scores exactly what model A scores — per example, bit for bit — through the real run
(config → space → driver → merge worker → fitness) on the tiny test world."""

import json

import pytest
import torch
import yaml

from evomerge.cli import main as cli
from evomerge.fitness import Fitness
from evomerge.toyworld import build_toyworld


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_toyworld(dir=tmp_path_factory.mktemp("toyworld") / "world", preset="test", log=None)


def _model_a_per_example(world, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(world.experts[name])
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    fitness = Fitness.from_dict(world.fitness_config(["target", "lang"]))
    with torch.no_grad():
        res = fitness.evaluate(model, tok, "calibration", batch_size=32, early_stopping=False)
    return {t: [float(s) for s in ts.scores] for t, ts in res.tasks.items()}, res


@pytest.mark.parametrize(
    "encoding, scale_mode, driver",
    [("indicator", "matrix", "cmaes"), ("choice", "per_layer", "catcma"), ("indicator", "none", "catcma")],
)
def test_identity_initialisation_reproduces_model_a_per_example(world, tmp_path, encoding, scale_mode, driver):
    options = {"population_size": 4, "include_x0": True}
    cfg = {
        "toyworld": {"preset": "test", "dir": str(world.root), "objectives": ["target", "lang"]},
        "space": {
            "kind": "dataflow",
            "embed_from": "lang",
            "repeats": 2,
            "encoding": encoding,
            "scale_mode": scale_mode,
        },
        "driver": {"name": driver, "options": options},
        "budget": {"max_evals": 4},
        "evaluator": {"backend": "inprocess", "device": "cpu", "batch_size": 32},
        "run": {"seed": 3},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    lines = (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    steps = first["recipe"]["path"]
    assert [(s["model"], s["layer"], s["scale"]) for s in steps] == [("lang", 0, 1.0), ("lang", 1, 1.0)]
    expected, res = _model_a_per_example(world, "lang")
    assert first["per_example"] == expected  # every example's score, exactly
    assert first["objectives"] == {o.task: o.value for o in res.objectives}
    # the other candidates are draws around x0 (not copies of it)
    assert any(json.loads(line)["genome"] != first["genome"] for line in lines[1:])
