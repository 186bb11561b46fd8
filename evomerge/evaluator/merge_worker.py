"""The merge-and-score worker a run hands to its evaluator backend.

:class:`MergeWorkerSpec` is picklable (paths and plain dicts only), so a Ray actor can build it
in its own process. ``build()`` happens once per worker: the resident models
(:class:`~evomerge.merge.live.LiveModels`: model pool with task vectors cached, one live model of the
base architecture, tokenizer, data-flow sources as recipes name them) and the fitness tasks. Each
request then costs one ``live.build(recipe)`` (an in-place merge, or a path model over resident
sources) and one fitness evaluation.

Objective names are the run's (:meth:`evomerge.objectives.Objectives.from_fitness`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from evomerge.evaluator.base import EvalRequest, Evaluation
from evomerge.objectives import Objectives


@dataclass
class MergeWorkerSpec:
    base: str | None
    experts: list[str]
    fitness: dict[str, Any]  # FitnessConfig as JSON
    fitness_base_dir: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 32
    early_stopping: bool = True  # on the calibration split, when the config enables it
    threads: int | None = None
    memory: str = "auto"  # evaluator.memory: auto | gpu | offload
    search_cache: int | str = "auto"  # evaluator.search_cache: auto | off | bytes

    def build(self):
        return _MergeEvaluator(self)


class _MergeEvaluator:
    def __init__(self, spec: MergeWorkerSpec):
        import torch

        from evomerge.fitness import Fitness, parse_fitness_config
        from evomerge.merge.live import LiveModels

        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        self.spec = spec
        cfg = parse_fitness_config(spec.fitness, base_dir=spec.fitness_base_dir)
        self.fitness = Fitness(cfg)
        self.live = LiveModels(
            spec.base,
            list(spec.experts),
            device=spec.device,
            dtype=spec.dtype,
            memory=spec.memory,
            search_cache=spec.search_cache,
        )
        self.fitness.check_tokenizer(self.live.tokenizer)  # e.g. chat_template without one: one line
        self.names = Objectives.from_fitness(self.fitness).names

    def reset(self) -> None:
        self.live.reset()

    def __call__(self, request: EvalRequest) -> Evaluation:
        import torch

        from evomerge.merge.recipes import parse_recipe

        t0 = time.perf_counter()
        model, tokenizer = self.live.build(parse_recipe(request.recipe))
        merge_seconds = time.perf_counter() - t0
        es = self.spec.early_stopping and request.split == "calibration"
        with torch.no_grad():
            result = self.fitness.evaluate(
                model,
                tokenizer,
                request.split,
                must_beat=request.must_beat if es else None,
                batch_size=self.spec.batch_size,
                early_stopping=es,
            )
        objectives = {name: float(ov.value) for name, ov in zip(self.names, result.objectives)}
        per_example = {name: [float(s) for s in ts.scores] for name, ts in result.tasks.items()}
        return Evaluation(
            objectives=objectives, per_example=per_example, fitness=result.to_dict(), merge_seconds=merge_seconds
        )
