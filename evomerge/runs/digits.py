"""The digits problem (M2N2's MNIST-MLP): genomes are the raw weights of a small MLP, scored by
training accuracy; the held-out score is test accuracy. Model-free, seconds per run — the
problem the resume tests run on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evomerge.config import RunConfig
from evomerge.evaluator.base import EvaluatorBackend
from evomerge.evaluator.function import FunctionWorkerSpec
from evomerge.objectives import Objectives
from evomerge.runs.problem import describe_space
from evomerge.runs.records import genome_file
from evomerge.scheduler.outcome import PerExampleLayout

OBJECTIVES = Objectives([("train_accuracy", "maximize", 1.0)])


def digits_evaluator(seed: int = 0):
    """Factory for a FunctionWorkerSpec: builds the world once, then scores genomes."""
    from evomerge.toyworld.digits import DigitsProblem as World

    world = World(seed)

    def evaluate(recipe: dict):
        correct = world.train_correct(np.asarray(recipe["genome"], dtype=np.float32))
        return {"train_accuracy": float(correct.mean())}, {"train": correct.astype(float).tolist()}

    return evaluate


@dataclass
class DigitsProblem:
    """See :class:`evomerge.runs.problem.Problem`; ``world``: the data and the two experts."""

    world: Any  # evomerge.toyworld.digits.DigitsProblem
    space: Any
    worker_spec: FunctionWorkerSpec
    meta: dict[str, Any]
    objectives: Objectives = OBJECTIVES
    early_stopping: bool = False
    name: str = "digits"

    @classmethod
    def build(cls, cfg: RunConfig, *, source: str) -> DigitsProblem:
        from evomerge.toyworld.digits import DigitsProblem as World

        seed = cfg.run.seed if cfg.digits is None or cfg.digits.seed is None else cfg.digits.seed
        world = World(seed)
        meta = {
            "problem": "digits",
            "driver": cfg.driver.name,
            "objectives": OBJECTIVES.to_json(),
            "space": describe_space(world.space),
            "num_layers": None,
        }
        spec = FunctionWorkerSpec("evomerge.runs.digits:digits_evaluator", kwargs={"seed": seed}, factory=True)
        return cls(world=world, space=world.space, worker_spec=spec, meta=meta)

    # -- the Problem protocol -------------------------------------------------------------------
    def per_example_layout(self) -> PerExampleLayout:
        return PerExampleLayout(["train"], {"train": self.world.n_train})

    def driver_options(self, options: Any) -> Any:
        if getattr(options, "initial", None) == "experts":
            return options.model_copy(update={"initial": [g.copy() for g in self.world.experts]})
        return options

    def to_recipe(self, genome: np.ndarray) -> dict[str, Any]:
        return {"genome": np.asarray(genome, dtype=np.float64).tolist()}

    def record_recipe(self, recipe: dict[str, Any]) -> dict[str, Any] | None:
        return None  # the genome is the recipe

    def best_file(self, record: dict[str, Any]) -> str:
        return genome_file(self.name, record)

    def validate(self, record: dict[str, Any], genome: np.ndarray, backend: EvaluatorBackend | None) -> dict[str, Any]:
        acc = self.world.test_accuracy(np.asarray(genome, dtype=np.float32))
        return {"id": record["id"], "split": "test", "objectives": {"test_accuracy": acc}}


__all__ = ["DigitsProblem", "digits_evaluator"]
