import json

import pytest
import yaml

from evomerge.cli import main
from evomerge.fitness import FitnessResult, ObjectiveValue, TaskScores


def test_fitness_result_json_round_trip():
    res = FitnessResult(
        split="calibration",
        tasks={
            "a": TaskScores(
                "a",
                "calibration",
                ["x1", "x2", "x3"],
                [1.0, 0.0, 1.0],
                n_total=10,
                stopped_early=True,
                stop_reason="why",
                wall_seconds=0.5,
                tokens=42,
            ),
            "b": TaskScores("b", "calibration", ["y"], [2.5], n_total=1, weights=[3.0], lower_is_better=True),
        },
        objectives=[
            ObjectiveValue("a", "mean", "maximize", 1.0, 2 / 3),
            ObjectiveValue("b", "perplexity", "minimize", 0.5, 12.18),
        ],
        wall_seconds=1.25,
        tokens=99,
        stopped_early=True,
        stop_reason="why",
        must_beat=0.9,
        upper_bound=0.8,
        meta={"model": "m"},
    )
    text = res.to_json()
    back = FitnessResult.from_json(text)
    assert back == res
    assert back.to_json() == text
    assert back.scalar == pytest.approx(2 / 3 - 0.5 * 12.18)
    assert back.maximize_values == [pytest.approx(2 / 3), -12.18]
    assert back.tasks["a"].by_id() == {"x1": 1.0, "x2": 0.0, "x3": 1.0}
    d = json.loads(text)
    assert d["tasks"]["a"]["n_evaluated"] == 3 and d["tasks"]["a"]["mean"] == pytest.approx(2 / 3)


@pytest.fixture
def eval_config(tmp_path):
    rows = [
        {"id": f"r{i}", "q": f"{i}+{i}=", "a": str(2 * i), "opts": [str(2 * i), str(2 * i + 1)], "gold": 0}
        for i in range(30)
    ]
    with open(tmp_path / "add.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    cfg = {
        "fitness": {
            "tasks": [
                {
                    "name": "gen",
                    "source": {"type": "jsonl", "path": "add.jsonl"},
                    "fields": {"prompt": "q", "answer": "a"},
                    "scorer": {"type": "exact_match", "max_new_tokens": 3},
                    "splits": {"calibration": 10, "validation": 8},
                },
                {
                    "name": "mc",
                    "source": {"type": "jsonl", "path": "add.jsonl"},
                    "fields": {"prompt": "q", "choices": "opts", "label": "gold"},
                    "scorer": {"type": "choice_loglik"},
                    "splits": {"calibration": 10, "validation": 8},
                },
                {
                    "name": "ppl",
                    "source": {"type": "jsonl", "path": "add.jsonl"},
                    "fields": {"prompt": "q", "answer": "a"},
                    "scorer": {"type": "nll"},
                    "splits": {"calibration": 10, "validation": 8},
                },
            ],
            "objectives": [{"task": "gen"}, {"task": "mc", "weight": 0.5}, {"task": "ppl", "metric": "perplexity"}],
        }
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_eval_model_dir_prints_json(tiny_llama_family, eval_config, capsys):
    assert (
        main(["eval", str(tiny_llama_family["base"]), "--config", str(eval_config), "--json", "--batch-size", "4"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "validation"
    assert [o["task"] for o in out["objectives"]] == ["gen", "mc", "ppl"]
    assert out["tasks"]["gen"]["n_evaluated"] == 8 and len(out["tasks"]["mc"]["scores"]) == 8
    assert out["objectives"][2]["direction"] == "minimize" and out["objectives"][2]["value"] > 1.0
    back = FitnessResult.from_dict(out)
    assert back.scalar == pytest.approx(out["scalar"])

    assert (
        main(
            [
                "eval",
                str(tiny_llama_family["base"]),
                "--config",
                str(eval_config),
                "--split",
                "calibration",
                "--limit",
                "3",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "split: calibration" in table and "ppl:perplexity" in table and "3/3" in table


def test_eval_recipe_merged_on_the_fly(tiny_llama_family, eval_config, tmp_path, capsys):
    fam = tiny_llama_family
    recipe = {
        "merge_method": "task_arithmetic",
        "base_model": str(fam["base"]),
        "models": [{"model": str(e), "parameters": {"weight": 0.5}} for e in fam["experts"]],
        "dtype": "float32",
        "seed": 0,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["eval", str(tmp_path / "recipe.yaml"), "--config", str(eval_config), "--json"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert main(["eval", str(fam["base"]), "--config", str(eval_config), "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert merged["tasks"]["ppl"]["example_ids"] == base["tasks"]["ppl"]["example_ids"]
    assert merged["tasks"]["ppl"]["scores"] != base["tasks"]["ppl"]["scores"]  # the merge changed the weights


def test_eval_uses_the_configs_engine_section(tiny_llama_family, eval_config, tmp_path, capsys, monkeypatch):
    from evomerge.fitness import objectives
    from evomerge.fitness.engines import HFOptions

    built = []
    real_build = objectives.build_engine

    def spy(options, model, tokenizer):
        built.append(options)
        return real_build(options, model, tokenizer)

    monkeypatch.setattr(objectives, "build_engine", spy)
    base = str(tiny_llama_family["base"])
    assert main(["eval", base, "--config", str(eval_config), "--json", "--limit", "4"]) == 0
    default = json.loads(capsys.readouterr().out)
    cfg = yaml.safe_load(eval_config.read_text())
    cfg["fitness"]["engine"] = {"generation": "loop", "logits_to_keep": False}
    custom = tmp_path / "engine.yaml"
    custom.write_text(yaml.safe_dump(cfg))
    assert main(["eval", base, "--config", str(custom), "--json", "--limit", "4"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert built == [HFOptions(), HFOptions(generation="loop", logits_to_keep=False)]
    # the hand-written loop without logits_to_keep scores exactly what generate() with it does
    assert {t: v["scores"] for t, v in chosen["tasks"].items()} == {t: v["scores"] for t, v in default["tasks"].items()}
    cfg["fitness"]["engine"] = {"type": "vllm"}
    custom.write_text(yaml.safe_dump(cfg))
    assert main(["eval", base, "--config", str(custom)]) == 2
    assert "unknown inference engine 'vllm'" in capsys.readouterr().err


def test_eval_errors_are_one_line(tiny_llama_family, eval_config, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--config", str(eval_config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: model not found: {tmp_path / 'nope'} (expected a checkpoint directory or a recipe YAML)"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tasks": [{"name": "x", "source": {"type": "jsonl", "path": "none.jsonl"}}]}))
    assert main(["eval", str(tiny_llama_family["base"]), "--config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"error: task 'x': jsonl file not found: {tmp_path / 'none.jsonl'}"
