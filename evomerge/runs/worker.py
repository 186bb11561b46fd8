"""The merge-and-score worker a run hands to its evaluator backend.

:class:`MergeWorkerSpec` is picklable (paths and plain dicts only), so a Ray actor can build it
in its own process. ``build()`` happens once per worker: open the model pool (task vectors cached),
load one live model of the base architecture, the tokenizer and the fitness tasks. Each request
then costs one in-place merge (only tensors whose resolved parameters changed are recomputed) and
one fitness evaluation. Data-flow recipes are run as a path model over the loaded sources (layers
shared by reference, nothing materialised, rebuilt per request — it costs no copies).

Data-flow sources stay resident for the worker's life: a plain source (a checkpoint) is read from
disk the first time a recipe names it; a nested parameter-space source (model A of the PS+DFS
space, whose recipe changes with every candidate) is one live module merged **in place** with
:class:`~evomerge.merge.apply.InPlaceMerger` — only tensors whose resolved parameters changed are
recomputed, and nothing is reloaded. When the nested recipe merges the worker's own pool (the
joint space's case) the module is the worker's live model itself, so the joint space needs one
model of the base architecture plus its other sources, loaded once.

Objective names are the run's (see :func:`objective_names`): the task name for a ``mean``
objective, ``task:metric`` otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evomerge.dtypes import resolve_device, torch_dtype
from evomerge.errors import EvomergeError, ModelError
from evomerge.evaluator.base import EvalRequest, Evaluation


def _load_model(ref: str, *, device: str, dtype, role: str = "model"):
    """Read one checkpoint from disk onto ``device`` (every model a worker loads comes through here)."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {role} {ref!r}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()


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

    def build(self):
        return _MergeEvaluator(self)


class _MergeEvaluator:
    def __init__(self, spec: MergeWorkerSpec):
        import torch
        from transformers import AutoTokenizer

        from evomerge.fitness import Fitness, parse_fitness_config
        from evomerge.merge.apply import InPlaceMerger
        from evomerge.pool import ModelPool

        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.dtype = torch_dtype(spec.dtype)
        self.pool = ModelPool(spec.base, list(spec.experts), device=self.device, dtype=self.dtype)
        ref = str(self.pool.reference_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(ref)
        cfg = parse_fitness_config(spec.fitness, base_dir=spec.fitness_base_dir)
        self.fitness = Fitness(cfg)
        self.fitness.check_tokenizer(self.tokenizer)  # e.g. chat_template without one: one line, before any load
        self.model = _load_model(ref, device=self.device, dtype=self.dtype)
        self.merger = InPlaceMerger(self.pool, self.model)
        self.names = objective_names(cfg)
        self._plain: dict[str, Any] = {}  # data-flow source ref -> loaded model
        self._nested: dict[str, tuple[tuple, Any]] = {}  # source name -> (pool key, InPlaceMerger)
        self._tokenizers: dict[str, Any] = {str(ref): self.tokenizer}

    def reset(self) -> None:
        # An apply interrupted half-way leaves tensors of two recipes: rewrite all next time.
        self.merger.invalidate()
        for _, merger in self._nested.values():
            merger.invalidate()

    # -- data-flow sources, resident ----------------------------------------------------------
    def _plain_source(self, src: str):
        ref = str(Path(src)) if Path(src).exists() else src
        model = self._plain.get(ref)
        if model is None:
            model = self._plain[ref] = _load_model(ref, device=self.device, dtype=self.dtype, role="data-flow source")
        return model

    def _nested_source(self, name: str, src: dict):
        """Model ``name`` merged to the nested recipe ``src``, in place in its resident module."""
        from evomerge.merge.apply import expert_ids
        from evomerge.merge.recipe import Recipe

        recipe = Recipe.model_validate(src)
        key = (str(recipe.base_model) if recipe.base_model is not None else None, tuple(expert_ids(recipe)))
        entry = self._nested.get(name)
        if entry is None or entry[0] != key:
            entry = self._nested[name] = (key, self._nested_merger(name, recipe))
        merger = entry[1]
        merger.apply(recipe)
        return merger.module

    def _nested_merger(self, name: str, recipe):
        from evomerge.merge.apply import InPlaceMerger, check_recipe_against_pool, pool_for_recipe

        live_taken = any(m is self.merger for other, (_, m) in self._nested.items() if other != name)
        if not live_taken:
            try:
                check_recipe_against_pool(recipe, self.pool)
            except EvomergeError:
                pass
            else:
                return self.merger  # the worker's pool and live model are model A's
        pool = pool_for_recipe(recipe, device=self.device, dtype=self.dtype)
        module = _load_model(str(pool.reference_dir), device=self.device, dtype=self.dtype)
        return InPlaceMerger(pool, module)

    def _tokenizer(self, ref: str):
        from transformers import AutoTokenizer

        tok = self._tokenizers.get(ref)
        if tok is None:
            tok = self._tokenizers[ref] = AutoTokenizer.from_pretrained(ref)
        return tok

    def _path_model(self, recipe: dict):
        from evomerge.space import DataFlowRecipe, build_path_model
        from evomerge.space.path_model import tokenizer_source

        dfr = DataFlowRecipe.validate_dict(recipe)
        sources = {
            name: self._nested_source(name, src) if isinstance(src, dict) else self._plain_source(src)
            for name, src in dfr.sources.items()
        }
        return build_path_model(dfr, sources).eval(), self._tokenizer(str(tokenizer_source(dfr)))

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
        return Evaluation(
            objectives=objectives, per_example=per_example, fitness=result.to_dict(), merge_seconds=merge_seconds
        )
