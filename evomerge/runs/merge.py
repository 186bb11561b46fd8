"""The merge problem: search merge recipes over a base model and its fine-tuned experts.

Built from a run config by :meth:`MergeProblem.build`, which checks everything that needs no
evaluation and that the config cannot — model paths, model compatibility from the headers alone,
the fitness tasks and their non-empty calibration splits, the space over these models — so a user
error never leaves a run directory behind. The models and tasks come from ``models`` + ``fitness``, or from an embedded
toy world (``toyworld``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from evomerge.config import RunConfig
from evomerge.errors import ConfigError, ModelError
from evomerge.evaluator.base import EvalRequest, EvaluatorBackend
from evomerge.merge.recipes import recipe_dict
from evomerge.objectives import Objectives
from evomerge.runs.problem import describe_space
from evomerge.runs.records import genome_file
from evomerge.scheduler.outcome import PerExampleLayout


@dataclass
class MergeProblem:
    """See :class:`evomerge.runs.problem.Problem`."""

    space: Any
    objectives: Objectives
    worker_spec: Any  # evomerge.evaluator.merge_worker.MergeWorkerSpec
    meta: dict[str, Any]
    early_stopping: bool
    task_sizes: dict[str, int]  # calibration examples per task, in per-example order
    models: dict[str, Any] = field(default_factory=dict)  # {"base": path, "experts": {name: path}}
    world: Any = None  # the toy world, when the config names one
    name: str = "merge"

    @classmethod
    def build(cls, cfg: RunConfig, *, source: str, config_dir: str | Path | None, log) -> MergeProblem:
        from evomerge.evaluator.merge_worker import MergeWorkerSpec
        from evomerge.fitness import Fitness, parse_fitness_config
        from evomerge.pool import ModelPool
        from evomerge.space import build_space

        world = None
        if cfg.toyworld is not None:
            world = _toyworld(cfg, log)
            base, experts = str(world.base), {k: str(v) for k, v in world.experts.items()}
            objectives = cfg.toyworld.objectives
            fitness_data = cfg.fitness or world.fitness_config(list(objectives) if objectives else [world.target_task])
        else:
            base, experts = cfg.models.base, dict(cfg.models.experts)
            _check_model_path(source, "models.base", base)
            for name, path in experts.items():
                _check_model_path(source, f"models.experts.{name}", path)
            fitness_data = cfg.fitness

        fcfg = parse_fitness_config(fitness_data, where=f"{source} (fitness)", base_dir=config_dir)
        fit = Fitness(fcfg)  # reads every task's examples: a missing file or an empty split fails here
        for name, task in fit.tasks.items():
            if task.split_size("calibration") == 0:
                raise ConfigError(
                    f"{source}: fitness task {name!r}: the calibration split is empty (the dataset has no examples for it)"
                )
        # Headers only: architecture, tensor names and shapes of every model agree, before any merge.
        pool = ModelPool(base, list(experts.values()), device="cpu")
        space = build_space(
            cfg.space,
            base=base,
            experts=experts,
            num_layers=pool.num_layers,
            seed=cfg.run.seed,
            dtype=cfg.evaluator.dtype,
            source=source,
            tensor_names=pool.tensor_names,
        )
        objectives = Objectives.from_fitness(fit)
        ev = cfg.evaluator
        if ev.backend == "inprocess":  # models that fit no placement: now (a Ray actor plans on its own GPU)
            from evomerge.dtypes import resolve_device, torch_dtype
            from evomerge.merge.placement import plan_for_pool

            plan_for_pool(
                pool,
                device=resolve_device(ev.device),
                dtype_bytes=torch_dtype(ev.dtype).itemsize,
                memory=ev.memory,
                search_cache=ev.search_cache,
            )
        spec = MergeWorkerSpec(
            base=base,
            experts=list(experts.values()),
            fitness=fcfg.model_dump(mode="json"),
            fitness_base_dir=str(config_dir) if config_dir else None,
            device=ev.device,
            dtype=ev.dtype,
            batch_size=ev.batch_size,
            memory=ev.memory,
            search_cache=ev.search_cache,
            early_stopping=bool(fcfg.early_stopping.enabled),
        )
        meta = {
            "problem": "merge",
            "driver": cfg.driver.name,
            "objectives": objectives.to_json(),
            "space": describe_space(space),
            "num_layers": int(pool.num_layers),
            "models": {"base": base, "experts": experts},
            "target_task": getattr(world, "target_task", None),
            "expert_skills": dict(getattr(world, "expert_skills", {}) or {}),
        }
        return cls(
            space=space,
            objectives=objectives,
            worker_spec=spec,
            meta=meta,
            early_stopping=bool(fcfg.early_stopping.enabled),
            task_sizes={t: fit.tasks[t].split_size("calibration") for t in sorted(fit.tasks)},
            models={"base": base, "experts": experts},
            world=world,
        )

    # -- the Problem protocol -------------------------------------------------------------------
    def per_example_layout(self) -> PerExampleLayout:
        return PerExampleLayout(list(self.task_sizes), self.task_sizes)

    def driver_options(self, options: Any) -> Any:
        return options

    def to_recipe(self, genome: np.ndarray) -> dict[str, Any]:
        return recipe_dict(self.space.to_recipe(np.asarray(genome, dtype=np.float64)))

    def record_recipe(self, recipe: dict[str, Any]) -> dict[str, Any] | None:
        return recipe

    def best_file(self, record: dict[str, Any]) -> str:
        if record.get("recipe") is not None:
            return yaml.safe_dump(record["recipe"], sort_keys=False)
        return genome_file(self.name, record)

    def validate(self, record: dict[str, Any], genome: np.ndarray, backend: EvaluatorBackend | None) -> dict[str, Any]:
        """The best recipe on the fitness's held-out (validation) split, early stopping off."""
        from evomerge.evaluator import InProcessBackend

        own = backend is None
        backend = backend or InProcessBackend(self.worker_spec)
        try:
            recipe = record.get("recipe") or self.to_recipe(genome)
            backend.submit(EvalRequest(int(record["id"]), recipe, "validation", None))
            results = []
            while not results:
                results = backend.wait(timeout=5.0)
            res = results[0]
        finally:
            if own:
                backend.close()
        if not res.ok:
            return {"id": record["id"], "split": "validation", "objectives": None, "error": res.error_line}
        return {"id": record["id"], "split": "validation", "objectives": res.objectives}


def _check_model_path(source: str, key: str, path: str | None) -> None:
    if path is None:
        return
    from evomerge.pool.resolve import looks_local

    if not Path(path).expanduser().exists() and looks_local(path):
        raise ModelError(f"{source}: {key}: model path '{path}' does not exist")


def _toyworld(cfg: RunConfig, log):
    from evomerge.toyworld import build_toyworld

    kwargs = {"preset": cfg.toyworld.preset, "seed": cfg.toyworld.seed, "log": log}
    if cfg.toyworld.dir:
        kwargs["dir"] = cfg.toyworld.dir
    return build_toyworld(**kwargs)


__all__ = ["MergeProblem"]
