import json

import pytest

from evomerge.errors import ConfigError
from evomerge.fitness import Fitness, generators, load_fitness_config, load_task


def rows(n=40):
    return [{"id": f"e{i}", "question": f"{i}+1=", "answer": str(i + 1)} for i in range(n)]


@pytest.fixture
def data_dir(tmp_path):
    with open(tmp_path / "data.jsonl", "w") as fh:
        for r in rows():
            fh.write(json.dumps(r) + "\n")
    return tmp_path


def task_cfg(**over):
    cfg = {
        "name": "t",
        "source": {"type": "jsonl", "path": "data.jsonl"},
        "fields": {"prompt": "question"},
        "scorer": {"type": "exact_match_forced"},
        "splits": {"calibration": 10, "validation": 20, "seed": 0},
    }
    cfg.update(over)
    return cfg


def one_line_error(data, base_dir, match):
    with pytest.raises(ConfigError) as info:
        Fitness.from_dict(data, base_dir=base_dir)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == match, msg
    return msg


def test_splits_disjoint_and_deterministic(data_dir):
    t1 = load_task(task_cfg(), base_dir=data_dir)
    t2 = load_task(task_cfg(), base_dir=data_dir)
    cal = [e.id for e in t1.examples("calibration")]
    val = [e.id for e in t1.examples("validation")]
    assert len(cal) == 10 and len(val) == 20
    assert not set(cal) & set(val)
    assert not {e.prompt for e in t1.examples("calibration")} & {e.prompt for e in t1.examples("validation")}
    assert cal == [e.id for e in t2.examples("calibration")] and val == [e.id for e in t2.examples("validation")]
    other = load_task(task_cfg(splits={"calibration": 10, "validation": 20, "seed": 1}), base_dir=data_dir)
    assert [e.id for e in other.examples("calibration")] != cal
    rest = load_task(task_cfg(splits={"calibration": 10, "seed": 0}), base_dir=data_dir)
    assert [e.id for e in rest.examples("calibration")] == cal and rest.split_size("validation") == 30
    assert [e.id for e in rest.examples("validation")][:20] == val  # same shuffle, longer tail
    ex = t1.examples("calibration")[0]
    assert ex.prompt == f"{ex.id[1:]}+1=" and ex.answer == str(int(ex.id[1:]) + 1)


def test_sources_csv_parquet_datasets_and_template(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = rows(12)
    with open(tmp_path / "d.csv", "w") as fh:
        fh.write("id,question,answer\n" + "".join(f"{r['id']},{r['question']},{r['answer']}\n" for r in data))
    pq.write_table(pa.Table.from_pylist(data), tmp_path / "d.parquet")
    datasets.Dataset.from_list(data).save_to_disk(str(tmp_path / "ds"))
    seen = []
    for source in (
        {"type": "csv", "path": "d.csv"},
        {"type": "parquet", "path": "d.parquet"},
        {"type": "datasets", "path": "ds"},
    ):
        task = load_task(
            task_cfg(
                source=source,
                template="Q: {question} A:",
                answer_template=" {answer}",
                splits={"calibration": 4, "seed": 2},
            ),
            base_dir=tmp_path,
        )
        seen.append([(e.id, e.prompt, e.answer) for e in task.examples("calibration")])
    assert seen[0] == seen[1] == seen[2]
    assert seen[0][0][1].startswith("Q: ") and seen[0][0][2].startswith(" ")


def test_generator_registry_and_lazy_toyworld():
    generators.register("test.gen", lambda n=5: [{"id": str(i), "prompt": "p", "answer": "a"} for i in range(n)])
    try:
        task = load_task(
            {
                "name": "g",
                "source": {"type": "generator", "name": "test.gen", "params": {"n": 8}},
                "splits": {"calibration": 3},
            }
        )
        assert task.split_size("calibration") == 3 and task.split_size("validation") == 5
    finally:
        generators.unregister("test.gen")
    with pytest.raises(ConfigError, match=r"^unknown generator 'nope'; known: "):
        generators.get("nope")
    try:
        import evomerge.toyworld  # noqa: F401
    except ImportError:
        pytest.skip("evomerge.toyworld not built yet")
    assert callable(generators.get("toyworld.target"))


def test_bad_configs_one_line_each(data_dir):
    base = {"tasks": [task_cfg()]}
    one_line_error(
        {"tasks": [task_cfg(source={"type": "jsonl", "path": "missing.jsonl"})]},
        data_dir,
        f"task 't': jsonl file not found: {data_dir / 'missing.jsonl'}",
    )
    one_line_error(
        {"tasks": [task_cfg(fields={"prompt": "query"})]},
        data_dir,
        f"task 't': column 'query' (field prompt) missing in {data_dir / 'data.jsonl'}:1; "
        "columns: id, question, answer",
    )
    one_line_error(
        {"tasks": [task_cfg(scorer={"type": "bleu"})]},
        data_dir,
        "task 't': scorer.type: unknown scorer 'bleu' (known: exact_match, exact_match_forced, "
        "choice_loglik, nll, callable)",
    )
    one_line_error(
        {**base, "objectives": [{"task": "other"}]}, data_dir, "objectives[0]: unknown task 'other'; tasks: t"
    )
    one_line_error(
        {"tasks": [task_cfg(splits={"calibration": 50})]},
        data_dir,
        f"task 't': splits.calibration is 50 but {data_dir / 'data.jsonl'} has 40 examples",
    )
    one_line_error(
        {"tasks": [task_cfg(template="{prompt} {hint}")]},
        data_dir,
        f"task 't': template names {{hint}}, not a column of {data_dir / 'data.jsonl'}:1",
    )
    one_line_error(
        {"tasks": [task_cfg(scorer={"type": "exact_match", "max_new_token": 4})]},
        data_dir,
        "task 't': scorer.max_new_token: unknown key (did you mean 'max_new_tokens'?)",
    )
    fit = Fitness.from_dict({"tasks": [task_cfg(splits={"calibration": 40})]}, base_dir=data_dir)
    with pytest.raises(ConfigError) as info:
        fit.evaluate(None, None, "validation")
    assert str(info.value) == (
        f"task 't': split 'validation' is empty ({data_dir / 'data.jsonl'} has 40 examples, calibration takes 40)"
    )
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope.yaml$"):
        load_fitness_config(data_dir / "nope.yaml")
    with pytest.raises(ConfigError, match="direction maximize, but scorer 'nll' is lower-is-better"):
        Fitness.from_dict(
            {"tasks": [task_cfg(scorer={"type": "nll"})], "objectives": [{"task": "t", "direction": "maximize"}]},
            base_dir=data_dir,
        )


def test_run_config_with_fitness_key(data_dir):
    import yaml

    (data_dir / "run.yaml").write_text(
        yaml.safe_dump({"driver": {"name": "cmaes"}, "fitness": {"tasks": [task_cfg()]}})
    )
    cfg = load_fitness_config(data_dir / "run.yaml")
    assert [t.name for t in cfg.tasks] == ["t"] and cfg.objectives[0].task == "t"
    fit = Fitness(cfg)  # relative path resolved against the config's folder
    assert fit.tasks["t"].split_size("calibration") == 10
    # a dumped config parses back to the same thing (the run store keeps it as JSON)
    again = Fitness.from_dict(cfg.model_dump(mode="json"), base_dir=data_dir)
    assert [e.id for e in again.tasks["t"].examples("validation")] == [
        e.id for e in fit.tasks["t"].examples("validation")
    ]
