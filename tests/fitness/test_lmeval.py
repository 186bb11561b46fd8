"""The lm-evaluation-harness adapter on harness tasks defined on local files (needs the [lmeval] extra).

The same task through lm-eval and natively gives the same per-document scores (generation,
teacher-forced log-likelihood, multiple choice — on the toy world's test preset and on a random
Llama); the in-process path equals the harness's own ``simple_evaluate`` loop; the harness's
requests are built once per worker, not once per candidate.
"""

import json

import pytest

pytest.importorskip("lm_eval")

from evomerge.errors import ConfigError  # noqa: E402
from evomerge.fitness import Fitness  # noqa: E402
from evomerge.fitness.engines import HFEngine  # noqa: E402
from evomerge.testing.lmeval_tasks import choice_rows, paired_tasks, write_harness_tasks  # noqa: E402

HEADER = "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"


def toy_rows() -> list[dict]:
    from evomerge.fitness import generators

    return choice_rows(generators.get("toyworld.target")()[:240])


def paired_fitness(folder, kinds, calibration: int, validation: int, objectives=None) -> Fitness:
    cfg = {"tasks": paired_tasks(kinds, {"calibration": calibration, "validation": validation, "seed": 3})}
    if objectives:
        cfg["objectives"] = [{"task": t} for t in objectives]
    return Fitness.from_dict(cfg, base_dir=folder)


@pytest.fixture(scope="module")
def toy(world, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("lmeval_toy")
    write_harness_tasks(folder, toy_rows())
    tok = AutoTokenizer.from_pretrained(str(world.tokenizer))
    models = {
        p.name: AutoModelForCausalLM.from_pretrained(str(p)).eval() for p in [world.base, *world.experts.values()]
    }
    return folder, tok, models


def test_toy_world_harness_scores_equal_native_scores(toy):
    """generate_until = greedy exact match, loglikelihood's acc (is_greedy) = teacher-forced exact
    match, multiple_choice's acc / acc_norm = choice log-likelihood (sum / per character): per
    document, on both splits, for the base and both experts of the toy world."""
    folder, tok, models = toy
    kinds = ("gen", "ll", "mc", "mc_norm")
    fit = paired_fitness(folder, kinds, calibration=48, validation=64)
    seen = {k: set() for k in kinds}
    for name, model in models.items():
        engine = HFEngine(model, tok)
        for split in ("calibration", "validation"):
            res = fit.evaluate(engine, split)
            for kind in kinds:
                h, n = res.tasks[f"h_{kind}"], res.tasks[f"n_{kind}"]
                assert h.example_ids == n.example_ids, (name, split, kind)
                assert h.scores == n.scores, (name, split, kind)
                seen[kind].update(h.scores)
            assert res.tasks["h_gen"].outputs == res.tasks["n_gen"].outputs
            assert res.tasks["h_ll"].tokens == res.tasks["n_ll"].tokens
    assert all(s == {0.0, 1.0} for s in seen.values()), seen  # right and wrong answers on every kind


def test_in_process_path_equals_the_harness_loop(toy):
    """Per-document metrics of the in-process path equal ``simple_evaluate``'s on the same documents."""
    from lm_eval import simple_evaluate

    from evomerge.fitness.lmeval_requests import make_lm

    folder, tok, models = toy
    fit = paired_fitness(folder, ("gen", "ll", "mc"), calibration=40, validation=0)
    engine = HFEngine(models["math"], tok)
    res = fit.evaluate(engine, "calibration")
    for kind in ("gen", "ll", "mc"):
        task = fit.tasks[f"h_{kind}"]
        harness = task.scorer.harness
        docs = [int(e.id) for e in task.examples("calibration")]
        out = simple_evaluate(
            model=make_lm(engine),
            tasks=[harness.name],
            task_manager=harness_manager(folder),
            samples={harness.name: sorted(docs)},
            log_samples=True,
            bootstrap_iters=0,
            verbosity="ERROR",
        )
        by_doc = {int(r["doc_id"]): float(r[harness.metric]) for r in out["samples"][harness.name]}
        assert res.tasks[f"h_{kind}"].scores == [by_doc[d] for d in docs], kind


def harness_manager(folder):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder / "tasks"), include_defaults=False)


def test_requests_are_built_once_and_ids_cached(toy, monkeypatch):
    """Candidates after the first rebuild nothing: no harness set-up, no re-tokenisation; a racing
    prefix scores what the full split gives it."""
    folder, tok, models = toy
    fit = paired_fitness(folder, ("gen", "mc"), calibration=32, validation=16, objectives=("h_gen", "h_mc"))
    builds, encodes = [], []
    for kind in ("gen", "mc"):
        harness_task = fit.tasks[f"h_{kind}"].scorer.harness.task
        real = harness_task.build_all_requests
        monkeypatch.setattr(
            harness_task, "build_all_requests", lambda real=real, **kw: (builds.append(kw["samples"]), real(**kw))[1]
        )

    class CountingTokenizer:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *a, **kw):
            encodes.append(a[0])
            return self.inner(*a, **kw)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    engine = HFEngine(models["base"], CountingTokenizer(tok))
    first = fit.evaluate(engine, "calibration")
    # one build per task, over both splits' documents together
    assert [len(b) for b in builds] == [48, 48]
    fit.evaluate(engine, "validation")
    harnesses = [fit.tasks[f"h_{k}"].scorer.harness for k in ("gen", "mc")]
    texts = {
        a
        for h in harnesses
        for insts in h.requests(h.wanted).values()
        for i in insts
        for a in i.args
        if isinstance(a, str)
    }

    def task_encodes():  # transformers' stop-string tables encode probes of their own: not counted
        return sum(1 for e in encodes if e in texts)

    n_encodes = task_encodes()
    assert n_encodes > 0
    for model in models.values():
        engine.rebind(model)
        fit.evaluate(engine, "calibration")
        fit.evaluate(engine, "validation")
    assert len(builds) == 2 and task_encodes() == n_encodes
    engine.rebind(models["base"])
    task = fit.tasks["h_gen"]
    prefix = task.score(engine, task.examples("calibration")[:7]).scores
    assert prefix == first.tasks["h_gen"].scores[:7]


def test_lmeval_errors(toy, tmp_path):
    folder, tok, models = toy

    def load(params=None, task="toy_gen"):
        src = {"type": "lmeval", "task": task, "include_path": str(folder / "tasks"), "params": params or {}}
        return Fitness.from_dict({"tasks": [{"name": "x", "source": src}]}, base_dir=tmp_path)

    with pytest.raises(ConfigError, match=r"^task 'x': lm-eval task 'toy_gen' has metrics exact_match, not 'acc'$"):
        load({"metric": "acc"})
    with pytest.raises(ConfigError, match=r"^lm-eval task 'toy_gen' has filters none, not 'strict'$"):
        load({"filter": "strict"})
    with pytest.raises(ConfigError, match=r"^task 'x': source.params.metrc: unknown key \(known: metric, filter\)$"):
        load({"metrc": "acc"})
    with pytest.raises(ConfigError, match=r"^task 'x': unknown lm-eval task 'nope' \(include_path "):
        load(task="nope")
    sampled = folder / "sampled"
    sampled.mkdir(exist_ok=True)
    body = (folder / "tasks" / "toy_gen.yaml").read_text().replace("toy_gen", "toy_sampled")
    (sampled / "toy_sampled.yaml").write_text(body.replace("do_sample: false", "do_sample: true\n  temperature: 0.7"))
    src = {"type": "lmeval", "task": "toy_sampled", "include_path": str(sampled)}
    fit = Fitness.from_dict({"tasks": [{"name": "s", "source": src, "splits": {"calibration": 4}}]})
    with pytest.raises(ConfigError, match=r"^lm-eval task 'toy_sampled' samples \(do_sample: true, temperature 0.7\)"):
        fit.evaluate(HFEngine(models["base"], tok), "calibration")


def test_random_llama_choice_task(tmp_path, random_llama, tok):
    """A multiple-choice harness task on a random tiny Llama equals the native choice scores."""
    rows = [{"q": f"{i}+{i}=", "opts": [str(2 * i), str(2 * i + 1), "x"], "gold": i % 3} for i in range(20)]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "evm_mc.yaml").write_text(
        "task: evm_mc\n" + HEADER.format(data=tmp_path / "mc.jsonl") + "output_type: multiple_choice\n"
        'doc_to_text: "{{q}}"\ndoc_to_choice: "{{opts}}"\ndoc_to_target: gold\ntarget_delimiter: ""\n'
        "metric_list:\n  - metric: acc\n"
    )
    splits = {"calibration": 8, "seed": 0}
    fit = Fitness.from_dict(
        {
            "tasks": [
                {
                    "name": "harness",
                    "source": {"type": "lmeval", "task": "evm_mc", "include_path": "tasks"},
                    "splits": splits,
                },
                {
                    "name": "native",
                    "source": {"type": "jsonl", "path": "mc.jsonl"},
                    "fields": {"prompt": "q", "choices": "opts", "label": "gold"},
                    "scorer": {"type": "choice_loglik"},
                    "splits": splits,
                },
            ]
        },
        base_dir=tmp_path,
    )
    res = fit.evaluate(random_llama, tok, "calibration")
    h, n = res.tasks["harness"], res.tasks["native"]
    assert h.example_ids == n.example_ids and h.scores == n.scores
    assert h.tokens > 0 and fit.tasks["harness"].bounded


def test_a_search_on_the_harness_task_equals_the_search_on_the_native_task(toy, world, tmp_path):
    """``evomerge run`` with the toy world's target as a harness ``loglikelihood`` task and with the
    native teacher-forced exact match: the same candidates, the same per-example scores, the same best."""
    import yaml

    from evomerge.cli import main

    folder, _, _ = toy
    logs = {}
    for side in ("h", "n"):
        task = next(
            t for t in paired_tasks(["ll"], {"calibration": 48, "validation": 32, "seed": 1}) if t["name"][0] == side
        )
        task = {**task, "name": "target"}
        if side == "h":
            task["source"] = {**task["source"], "include_path": str(folder / "tasks")}
        else:
            task["source"] = {**task["source"], "path": str(folder / "rows.jsonl")}
        cfg = {
            "models": {"base": str(world.base), "experts": {k: str(v) for k, v in world.experts.items()}},
            "space": {"kind": "parameter", "method": "task_arithmetic", "layer_groups": 1, "params": ["weight"]},
            "driver": {"name": "cmaes", "options": {}},
            "fitness": {"tasks": [task]},
            "budget": {"max_evals": 8},
            "run": {"seed": 0},
        }
        path = tmp_path / f"{side}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["run", str(path), "--run-dir", str(tmp_path / side)]) == 0
        rows = [json.loads(line) for line in (tmp_path / side / "evaluations.jsonl").read_text().splitlines()]
        logs[side] = [(r["genome"], r["values"], r["per_example"]) for r in rows]
    assert len(logs["h"]) == 8 and logs["h"] == logs["n"]
    assert len({str(v) for _, v, _ in logs["n"]}) > 1  # candidates differ in fitness
