"""The one Objectives value: naming rule, signs, scalarisation, driver values, record fields, target."""

from types import SimpleNamespace

import numpy as np
import pytest

from evomerge.errors import ConfigError
from evomerge.objectives import Objective, Objectives, objective_name

TWO = Objectives([("acc", "maximize", 2.0), ("loss", "minimize", 0.5)])
VALUES = {"acc": 0.8, "loss": 1.5}


def test_naming_rule_mean_metric_and_repeats():
    assert objective_name("add", "mean") == "add"
    assert objective_name("add", "perplexity") == "add:perplexity"
    assert objective_name("add", "mean", ["x", "add"]) == "add#2"

    task = lambda name, lower: SimpleNamespace(name=name, lower_is_better=lower)  # noqa: E731
    fit = SimpleNamespace(
        objectives=[
            SimpleNamespace(task=task("add", True), metric="mean", direction=None, weight=1),
            SimpleNamespace(task=task("add", True), metric="perplexity", direction="minimize", weight=0.5),
            SimpleNamespace(task=task("add", True), metric="mean", direction="minimize", weight=2),
            SimpleNamespace(task="copy", metric="mean", direction="maximize", weight=1),
        ]
    )
    objs = Objectives.from_fitness(fit)
    assert list(objs) == [
        Objective("add", "minimize", 1.0),
        Objective("add:perplexity", "minimize", 0.5),
        Objective("add#2", "minimize", 2.0),
        Objective("copy", "maximize", 1.0),
    ]
    assert objs.names == ["add", "add:perplexity", "add#2", "copy"]
    with pytest.raises(TypeError, match="objective on task 'copy' has no direction"):
        Objectives.from_fitness([SimpleNamespace(task="copy", metric="mean", direction=None, weight=1)])


def test_from_fitness_of_a_real_fitness_config(tmp_path):
    from evomerge.fitness import Fitness, parse_fitness_config

    (tmp_path / "t.jsonl").write_text("".join(f'{{"q": "{i}", "a": "{i}"}}\n' for i in range(6)))
    task = {
        "name": "t",
        "source": {"type": "jsonl", "path": "t.jsonl"},
        "fields": {"prompt": "q", "answer": "a"},
        "splits": {"calibration": 3, "validation": 3},
    }
    cfg = {
        "tasks": [{**task, "scorer": {"type": "nll"}}],
        "objectives": [{"task": "t"}, {"task": "t", "metric": "perplexity", "weight": 0.25}],
    }
    fit = Fitness(parse_fitness_config(cfg, base_dir=tmp_path))
    assert list(Objectives.from_fitness(fit)) == [
        Objective("t", "minimize", 1.0),  # NLL's natural direction
        Objective("t:perplexity", "minimize", 0.25),
    ]


def test_signed_scalar_driver_values_and_record_fields():
    np.testing.assert_array_equal(TWO.signed(VALUES), [0.8, -1.5])
    assert TWO.scalar(VALUES) == 2.0 * 0.8 - 0.5 * 1.5
    np.testing.assert_array_equal(TWO.driver_values(VALUES, multi=True), [0.8, -1.5])
    np.testing.assert_array_equal(TWO.driver_values(VALUES, multi=False), [2.0 * 0.8 - 0.5 * 1.5])
    # one objective: the driver sees its signed value, the weight only scales the record's score
    one = Objectives([("loss", "minimize", 3.0)])
    np.testing.assert_array_equal(one.driver_values({"loss": 2.0}, multi=False), [-2.0])
    assert one.record_fields({"loss": 2.0}, ok=True) == {"values": [-2.0], "score": -6.0}

    assert TWO.record_fields(VALUES, ok=True) == {"values": [0.8, -1.5], "score": 2.0 * 0.8 - 0.5 * 1.5}
    assert TWO.record_fields(VALUES, ok=False) == {"values": None, "score": None}
    assert TWO.record_fields({"acc": 1.0}, ok=True) == {"values": None, "score": None}
    assert TWO.missing({"acc": 1.0}) == ["loss"]
    assert TWO.to_json() == [
        {"name": "acc", "direction": "maximize", "weight": 2.0},
        {"name": "loss", "direction": "minimize", "weight": 0.5},
    ]


def test_target_each_objective_in_its_own_direction():
    target = TWO.target({"acc": 0.7, "loss": 2.0})
    assert target.reached({"acc": 0.7, "loss": 2.0})
    assert target.reached({"acc": 0.9, "loss": 1.0})
    assert not target.reached({"acc": 0.69, "loss": 1.0})
    assert not target.reached({"acc": 0.9, "loss": 2.01})
    assert not target.reached({"acc": 0.9})  # a missing objective never reaches
    bare = TWO.target(0.5)  # a bare number: the first objective
    assert bare.reached({"acc": 0.5}) and not bare.reached({"acc": 0.4})
    none = TWO.target(None)
    assert not none and not none.reached(VALUES)


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {"acc": 1, "los": 2},
            "p.yaml: budget.target: unknown objective 'los' (did you mean 'loss'? known: acc, loss)",
        ),
        ({"speed": 1}, "p.yaml: budget.target: unknown objective 'speed' (known: acc, loss)"),
        ("high", "p.yaml: budget.target: objective 'acc': expected a number, got 'high'"),
    ],
)
def test_bad_targets_are_one_line(spec, message):
    with pytest.raises(ConfigError) as exc:
        TWO.target(spec, where="p.yaml: budget.target")
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "items, message",
    [
        (
            [{"direction": "maximize"}],
            "objectives[0]: expected name, direction (maximize|minimize) and weight (a number), "
            "got {'direction': 'maximize'} ('name')",
        ),
        (
            [("a", "maximize", 1), ("b", "maximize", "heavy")],
            "objectives[1]: expected name, direction (maximize|minimize) and weight (a number), "
            "got ('b', 'maximize', 'heavy') (could not convert string to float: 'heavy')",
        ),
        ([("a", "up", 1)], "objective 'a': direction must be maximize or minimize, got 'up'"),
        ([], "objectives: at least one objective is required"),
        ([("a", "maximize", 1), ("a", "minimize", 1)], "objectives: names must be unique, got ['a', 'a']"),
    ],
)
def test_bad_objectives_are_one_line(items, message):
    with pytest.raises(ConfigError) as exc:
        Objectives(items)
    assert str(exc.value) == message


def test_fitness_result_scalarises_with_the_same_objectives():
    from evomerge.fitness.result import FitnessResult, ObjectiveValue

    res = FitnessResult(
        split="calibration",
        tasks={},
        objectives=[
            ObjectiveValue("acc", "mean", "maximize", 2.0, 0.8),
            ObjectiveValue("loss", "mean", "minimize", 0.5, 1.5),
        ],
    )
    objectives, values = res.named_values()
    assert objectives == TWO and values == VALUES
    assert res.scalar == TWO.scalar(VALUES) and res.maximize_values == [0.8, -1.5]
