"""Every experiments/*.yaml stays loadable: config schema, driver options, fitness section, method
names — all checked without building worlds or loading models."""

from pathlib import Path

import pytest

from evomerge.config import load_config
from evomerge.drivers import driver_class, driver_names
from evomerge.fitness import parse_fitness_config
from evomerge.merge.methods import method_names

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


def test_the_issue_s_experiments_exist():
    names = {p.stem for p in EXPERIMENTS}
    assert {
        "toy-ps-cmaes",
        "toy-ps-m2n2",
        "toy-ps-optuna-tpe",
        "toy-ps-random",
        "toy-dfs-cmaes",
        "toy-psdfs-cmaes",
        "toy-psdfs-sequential",
        "m2n2-digits",
        "evollm-jp-ps",
        "evollm-jp-dfs",
        "evollm-jp-psdfs",
        "toy-pareto-nsga2",
    } <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_config_is_valid(path):
    cfg = load_config(path)
    assert cfg.driver.name in driver_names()
    assert isinstance(cfg.driver.options, driver_class(cfg.driver.name).Options)  # typed: unknown keys fail to load
    if cfg.problem == "merge" and cfg.space.kind != "dataflow":
        assert cfg.space.method in method_names()
    if cfg.fitness is not None:
        parse_fitness_config(cfg.fitness, where=path.name)
    assert cfg.budget.max_evals


def test_evollm_configs_name_the_paper_s_models():
    cfg = load_config(next(p for p in EXPERIMENTS if p.stem == "evollm-jp-ps"))
    assert cfg.models.base == "mistralai/Mistral-7B-v0.1"
    assert set(cfg.models.experts.values()) == {
        "augmxnt/shisa-gamma-7b-v1",
        "WizardLMTeam/WizardMath-7B-V1.1",
        "GAIR/Abel-7B-002",
    }
    assert cfg.evaluator.backend == "ray" and cfg.evaluator.num_gpus == 1


def test_the_pareto_demo_optimises_both_skills_with_nsga2():
    cfg = load_config(next(p for p in EXPERIMENTS if p.stem == "toy-pareto-nsga2"))
    assert cfg.toyworld.preset == "demo" and cfg.toyworld.objectives == ["math", "lang"] and cfg.fitness is None
    assert cfg.driver.name == "optuna" and cfg.driver.options.sampler == "nsga2"
