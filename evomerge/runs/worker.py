"""The merge-and-score worker a run hands to its evaluator backend.

:class:`MergeWorkerSpec` is picklable (paths and plain dicts only), so a Ray actor can build it
in its own process. ``build()`` happens once per worker: open the model pool (task vectors cached),
load one live model of the base architecture, the tokenizer and the fitness tasks. Each request
then costs one in-place merge (only tensors whose resolved parameters changed are recomputed) and
one fitness evaluation. Data-flow recipes are run as a path model over the loaded sources (layers
shared by reference, nothing materialised); the sources of the last path are kept for the next.

Objective names are the run's (see :func:`objective_names`): the task name for a ``mean``
objective, ``task:metric`` otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from evomerge.evaluator.base import EvalRequest, Evaluation


def objective_names(fitness_cfg) -> list[str]:
    names = []
    for o in fitness_cfg.objectives:
        name = o.task if o.metric == "mean" else f"{o.task}:{o.metric}"
        if name in names:
            name = f"{name}#{len(names)}"
        names.append(name)
    return names


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
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self):
        return _MergeEvaluator(self)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class _MergeEvaluator:
    def __init__(self, spec: MergeWorkerSpec):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from evomerge.merge.apply import InPlaceMerger
        from evomerge.pool import ModelPool
        from fitness import Fitness, parse_fitness_config

        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.dtype = getattr(torch, spec.dtype)
        self.pool = ModelPool(spec.base, list(spec.experts), device=self.device, dtype=self.dtype)
        ref = str(self.pool.reference_dir)
        self.model = AutoModelForCausalLM.from_pretrained(ref, dtype=self.dtype).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(ref)
        self.merger = InPlaceMerger(self.pool, self.model)
        cfg = parse_fitness_config(spec.fitness, base_dir=spec.fitness_base_dir)
        self.fitness = Fitness(cfg)
        self.names = objective_names(cfg)
        self._dfs_key: str | None = None
        self._dfs_sources = None

    def reset(self) -> None:
        # An apply interrupted half-way leaves tensors of two recipes: rewrite all next time.
        self.merger.invalidate()

    def _path_model(self, recipe: dict):
        from transformers import AutoTokenizer

        from evomerge.space import DataFlowRecipe, build_path_model, load_dataflow_sources
        from evomerge.space.path_model import tokenizer_source

        dfr = DataFlowRecipe.validate_dict(recipe)
        key = json.dumps(dfr.model_dump(mode="json")["sources"], sort_keys=True)
        if key != self._dfs_key:
            self._dfs_sources = load_dataflow_sources(dfr, device=self.device, dtype=self.dtype)
            self._dfs_tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(dfr))
            self._dfs_key = key
        return build_path_model(dfr, self._dfs_sources).eval(), self._dfs_tokenizer

    def __call__(self, request: EvalRequest) -> Evaluation:
        import torch

        t0 = time.perf_counter()
        recipe = request.recipe
        if recipe.get("merge_method") == "dataflow":
            model, tokenizer = self._path_model(recipe)
        else:
            from evomerge.merge.recipe import Recipe

            self.merger.apply(Recipe.model_validate(recipe))
            model, tokenizer = self.model, self.tokenizer
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
        return Evaluation(objectives=objectives, per_example=per_example, fitness=result.to_dict(), merge_seconds=merge_seconds)
