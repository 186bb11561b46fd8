"""The Problem protocol: both problems implement it, and the run reaches them only through it."""

import inspect

import numpy as np
import pytest
import yaml

from evomerge.config import parse_config
from evomerge.runs.digits import DigitsProblem
from evomerge.runs.merge import MergeProblem
from evomerge.runs.plan import build_plan
from evomerge.runs.problem import Problem

MEMBERS = [name for name in vars(Problem) if not name.startswith("_")] + list(Problem.__annotations__)


@pytest.mark.parametrize("cls", [MergeProblem, DigitsProblem])
def test_each_problem_implements_every_member_of_the_protocol(cls):
    fields = set(getattr(cls, "__dataclass_fields__", {}))
    for name in MEMBERS:
        assert name in fields or callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}"
    for name, member in vars(Problem).items():
        if callable(member) and not name.startswith("_"):
            assert list(inspect.signature(getattr(cls, name)).parameters) == list(
                inspect.signature(member).parameters
            ), name


def test_no_module_of_the_run_asks_which_problem_it_has():
    import evomerge.runs.api as api
    import evomerge.runs.plan as plan
    import evomerge.runs.records as records
    import evomerge.runs.session as session

    for mod in (api, plan, records, session):
        source = inspect.getsource(mod)
        assert "problem ==" not in source and '"digits"' not in source.replace('"digits": lambda', ""), mod.__name__


@pytest.fixture(scope="module")
def digits_plan():
    cfg = parse_config(
        {
            "problem": "digits",
            "driver": {"name": "m2n2", "options": {"initial": "experts"}},
            "budget": {"max_evals": 2},
        },
        "d.yaml",
    )
    return build_plan(cfg, source="d.yaml")


def test_digits_problem(digits_plan):
    problem = digits_plan.problem
    world = problem.world
    genome = np.linspace(-0.5, 0.5, problem.space.dim)
    assert problem.to_recipe(genome) == {"genome": genome.tolist()}
    assert problem.record_recipe(problem.to_recipe(genome)) is None  # the genome is the recipe
    record = {"id": 3, "genome": {"path": "genomes/3.npy"}}
    assert yaml.safe_load(problem.best_file(record)) == {"problem": "digits", "genome": {"path": "genomes/3.npy"}}
    assert problem.validate(record, world.experts[0], None) == {
        "id": 3,
        "split": "test",
        "objectives": {"test_accuracy": world.test_accuracy(world.experts[0].astype(np.float32))},
    }
    options = problem.driver_options(digits_plan.cfg.driver.options)  # the config's typed m2n2 options
    assert digits_plan.cfg.driver.options.initial == "experts"
    assert [np.asarray(g).tolist() for g in options.initial] == world.experts.tolist()
    assert options.model_copy(update={"initial": "experts"}) == digits_plan.cfg.driver.options
    layout = problem.per_example_layout()
    assert layout.tasks == ["train"] and layout.sizes == {"train": world.n_train}
    assert problem.objectives.names == ["train_accuracy"] and problem.meta["problem"] == "digits"
    # the driver starts from the experts (m2n2's initial archive)
    driver = digits_plan.make_driver()
    first = driver.ask(2)
    assert [c.genome.tolist() for c in first] == world.experts.tolist()
