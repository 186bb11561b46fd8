"""``toyworld.objectives``: a toy-world run optimises the world's own tasks, named, as objectives
(the Pareto demo's math + lang) — with exactly the world's task configs, never a hand copy."""

import pytest

from evomerge.config import parse_config
from evomerge.errors import ConfigError
from evomerge.runs.plan import build_plan
from evomerge.toyworld import build_toyworld

BASE = {
    "space": {"kind": "parameter", "method": "task_arithmetic", "layer_groups": 1, "params": ["weight"]},
    "driver": {"name": "optuna", "options": {"sampler": "nsga2"}},
    "budget": {"max_evals": 4},
}


def cfg_with(toyworld, **extra):
    return parse_config({"toyworld": toyworld, **BASE, **extra}, "p.yaml")


@pytest.mark.parametrize(
    "objectives, message",
    [
        (
            ["math", "lnag"],
            "p.yaml: key 'toyworld.objectives': unknown toy-world task 'lnag' (did you mean 'lang'? known: math, lang, target, target_hard, target_carry)",
        ),
        (
            ["sums"],
            "p.yaml: key 'toyworld.objectives': unknown toy-world task 'sums' (known: math, lang, target, target_hard, target_carry)",
        ),
        (
            [],
            "p.yaml: key 'toyworld.objectives': needs at least one task (known: math, lang, target, target_hard, target_carry)",
        ),
        (["math", "math"], "p.yaml: key 'toyworld.objectives': task 'math' is named twice"),
    ],
)
def test_bad_objective_names_are_one_line(objectives, message):
    with pytest.raises(ConfigError) as exc:
        cfg_with({"preset": "test", "objectives": objectives})
    assert str(exc.value) == message


def test_objectives_and_a_fitness_section_exclude_each_other():
    fitness = {"tasks": [{"name": "t", "source": {"type": "jsonl", "path": "t.jsonl"}}]}
    with pytest.raises(ConfigError) as exc:
        cfg_with({"preset": "test", "objectives": ["math"]}, fitness=fitness)
    assert (
        str(exc.value) == "p.yaml: give either 'toyworld.objectives' (the world's tasks by name) or 'fitness', not both"
    )


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tw") / "world"
    build_toyworld(dir=root, preset="test", log=None)
    return root


def test_named_tasks_become_maximised_objectives_with_the_world_s_configs(world_dir):
    plan = build_plan(
        cfg_with({"preset": "test", "dir": str(world_dir), "objectives": ["lang", "math"]}), log=lambda m: None
    )
    assert [(o.name, o.direction, o.weight) for o in plan.problem.objectives] == [
        ("lang", "maximize", 1.0),
        ("math", "maximize", 1.0),
    ]
    assert [o["name"] for o in plan.problem.meta["objectives"]] == ["lang", "math"]
    spec = plan.problem.worker_spec.fitness
    assert [o["task"] for o in spec["objectives"]] == ["lang", "math"]
    by_name = {t["name"]: t for t in spec["tasks"]}
    for name in ("lang", "math"):  # sources, held-out params and splits exactly as the world has them
        world_task = plan.problem.world.task(name)
        for part in ("source", "splits"):  # the dumped config adds the unset optional keys as None
            assert {k: by_name[name][part][k] for k in world_task[part]} == world_task[part]
    # NSGA-II sees both objectives (not a weighted sum)
    assert plan.make_driver().n_objectives == 2


def test_default_is_the_target_task_alone(world_dir):
    plan = build_plan(cfg_with({"preset": "test", "dir": str(world_dir)}), log=lambda m: None)
    assert [o.name for o in plan.problem.objectives] == [plan.problem.world.target_task] == ["target"]
    assert plan.make_driver().n_objectives == 1
