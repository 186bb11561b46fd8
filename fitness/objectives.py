"""Objectives over tasks, and the one call the evaluator makes: :func:`evaluate_objectives`.

An objective is (task, metric, direction, weight). The candidate's scalar fitness is
``F = Σ_k w_k s_k m_k`` with s_k = +1 for maximise and −1 for minimise (drivers maximise): the
run's one scalarisation, :class:`evomerge.objectives.Objectives`; multi-objective drivers take the
per-objective values instead (``FitnessResult.maximize_values``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evomerge.errors import ConfigError
from evomerge.fitness import early_stop
from evomerge.fitness.config import EarlyStoppingConfig, FitnessConfig, load_fitness_config, parse_fitness_config
from evomerge.fitness.engines import InferenceEngine, build_engine, is_engine
from evomerge.fitness.result import FitnessResult, ObjectiveValue, TaskScores
from evomerge.fitness.task import Task, load_task
from evomerge.objectives import Objectives, direction_sign


@dataclass
class Objective:
    """``direction=None`` takes the task's natural direction (minimise for NLL, else maximise)."""

    task: Task
    metric: str = "mean"
    direction: str | None = None
    weight: float = 1.0

    def __post_init__(self):
        if not isinstance(self.task, Task):
            raise TypeError(f"Objective.task must be a fitness.Task, got {type(self.task).__name__}")
        natural = "minimize" if self.task.lower_is_better else "maximize"
        if self.direction is None:
            self.direction = natural
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(
                f"objective on task {self.task.name!r}: direction must be maximize or minimize, got {self.direction!r}"
            )
        if self.direction != natural:
            better = "lower" if self.task.lower_is_better else "higher"
            raise ConfigError(
                f"objective on task {self.task.name!r}: direction {self.direction}, but scorer "
                f"{self.task.cfg.scorer.type!r} is {better}-is-better"
            )
        if self.metric == "perplexity" and self.task.cfg.scorer.type != "nll":
            raise ConfigError(f"objective on task {self.task.name!r}: metric 'perplexity' needs scorer 'nll'")

    @property
    def sign(self) -> float:
        return direction_sign(self.direction)

    @property
    def raceable(self) -> bool:
        return self.task.bounded and self.metric == "mean"


def build_objectives(cfg: FitnessConfig, tasks: dict[str, Task] | None = None) -> list[Objective]:
    if tasks is None:
        tasks = {t.name: load_task(t, base_dir=cfg.base_dir) for t in cfg.tasks}
    return [Objective(tasks[o.task], metric=o.metric, direction=o.direction, weight=o.weight) for o in cfg.objectives]


class Fitness:
    """A loaded fitness config: tasks (examples read, splits drawn), objectives, early stopping."""

    def __init__(self, cfg: FitnessConfig):
        self.cfg = cfg
        self.tasks = {t.name: load_task(t, base_dir=cfg.base_dir) for t in cfg.tasks}
        self.objectives = build_objectives(cfg, self.tasks)
        self.early_stopping = cfg.early_stopping
        self._engine: InferenceEngine | None = None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Fitness:
        return cls(load_fitness_config(path))

    @classmethod
    def from_dict(cls, data: dict, *, base_dir: str | Path | None = None) -> Fitness:
        return cls(parse_fitness_config(data, base_dir=base_dir))

    def check_tokenizer(self, tokenizer) -> None:
        """One line (ConfigError) if some task cannot render its prompts with ``tokenizer`` — a
        ``chat_template: true`` task and a tokenizer without one. Cheap: call it before loading models."""
        for task in self.tasks.values():
            task.check_tokenizer(tokenizer)

    def engine(self, model, tokenizer) -> InferenceEngine:
        """The config's inference engine bound to ``model``: built on the first call, rebound on
        later ones (a worker's live model, or the next data-flow path model: no set-up per candidate).
        A tokenizer it has not seen is checked first (:meth:`check_tokenizer`)."""
        if self._engine is None or tokenizer is not self._engine.tokenizer:
            self.check_tokenizer(tokenizer)
        if self._engine is None:
            self._engine = build_engine(self.cfg.engine, model, tokenizer)
        else:
            self._engine.rebind(model, tokenizer)
        return self._engine

    def evaluate(
        self,
        model,
        tokenizer=None,
        split: str = "calibration",
        *,
        must_beat: float | None = None,
        batch_size: int = 16,
        early_stopping: EarlyStoppingConfig | None | bool = True,
    ) -> FitnessResult:
        """``evaluate(engine, split, …)``, or ``evaluate(model, tokenizer, split, …)`` (the model is
        wrapped in :meth:`engine`). ``early_stopping=True`` uses the config's settings;
        ``False``/``None`` turns it off."""
        if is_engine(model):
            if isinstance(tokenizer, str):  # evaluate(engine, "validation")
                split = tokenizer
            elif tokenizer is not None:
                raise TypeError("evaluate(engine, split): an engine carries its own tokenizer")
            engine = model
        else:
            engine = self.engine(model, tokenizer)
        es = self.early_stopping if early_stopping is True else (early_stopping or None)
        return evaluate_objectives(
            engine, None, self.objectives, split, early_stopping=es, must_beat=must_beat, batch_size=batch_size
        )


def evaluate_objectives(
    model,
    tokenizer,
    objectives: Sequence[Objective],
    split: str = "calibration",
    early_stopping: EarlyStoppingConfig | None = None,
    must_beat: float | None = None,
    batch_size: int = 16,
) -> FitnessResult:
    """Score ``model`` (an inference engine, or a model wrapped in a default
    :class:`~evomerge.fitness.engines.HFEngine` with ``tokenizer``) on every task the objectives
    name; aggregate per objective.

    Racing (see :mod:`evomerge.fitness.early_stop`) runs when ``early_stopping.enabled``, ``must_beat`` is
    given, ``split`` is calibration and every objective is the mean of [0, 1] scores; otherwise
    every example of the split is scored (``meta['early_stopping']`` says why racing did not run).
    """
    if not objectives:
        raise ConfigError("no objectives to evaluate")
    engine = model if is_engine(model) else build_engine(None, model, tokenizer)
    start = time.perf_counter()
    tasks: dict[str, Task] = {}
    for obj in objectives:
        tasks.setdefault(obj.task.name, obj.task)
    examples = {name: task.examples(split) for name, task in tasks.items()}  # empty split -> one line

    why_not = _why_no_race(objectives, split, early_stopping, must_beat)
    scored: dict[str, dict] = {
        name: {"ids": [], "scores": [], "weights": [], "tokens": 0, "seconds": 0.0, "outputs": []} for name in tasks
    }

    def score_upto(name: str, n: int) -> None:
        have = len(scored[name]["scores"])
        if n <= have:
            return
        t0 = time.perf_counter()
        chunk = examples[name][have:n]
        batch = tasks[name].score(engine, chunk, batch_size=batch_size)
        rec = scored[name]
        rec["ids"].extend(e.id for e in chunk)
        rec["scores"].extend(batch.scores)
        rec["weights"].extend(batch.weights if batch.weights is not None else [1.0] * len(chunk))
        rec["outputs"].extend(batch.outputs if batch.outputs is not None else [])
        rec["tokens"] += batch.tokens
        rec["seconds"] += time.perf_counter() - t0

    stopped, reason, bound = False, None, None
    if why_not is None:
        totals = {name: len(ex) for name, ex in examples.items()}
        sizes = early_stop.stage_sizes(max(totals.values()), early_stopping.min_examples, early_stopping.growth)
        n_looks = len(sizes) - 1
        coefficients = [o.weight * o.sign for o in Objectives.from_fitness(objectives)]
        delta = early_stop.per_look_delta(early_stopping.confidence, len(objectives), n_looks)
        for size in sizes:
            for name in tasks:
                score_upto(name, min(size, totals[name]))
            if all(len(scored[n]["scores"]) == totals[n] for n in tasks):
                break
            terms = [(c, scored[o.task.name]["scores"], totals[o.task.name]) for c, o in zip(coefficients, objectives)]
            upper = early_stop.fitness_upper_bound(terms, delta, early_stopping.bound)
            if upper < must_beat:
                done = ", ".join(f"{n}: {len(scored[n]['scores'])}/{totals[n]}" for n in tasks)
                stopped, bound = True, upper
                reason = (
                    f"stopped after {done} calibration examples: upper bound {upper:.4f} on fitness "
                    f"({early_stopping.bound}, confidence {early_stopping.confidence}) < must_beat {must_beat:.4f}"
                )
                break
    else:
        for name in tasks:
            score_upto(name, len(examples[name]))

    task_scores = {}
    for name, task in tasks.items():
        rec = scored[name]
        task_scores[name] = TaskScores(
            task=name,
            split=split,
            example_ids=rec["ids"],
            scores=rec["scores"],
            n_total=len(examples[name]),
            weights=rec["weights"] if not task.bounded else None,
            stopped_early=stopped and len(rec["scores"]) < len(examples[name]),
            stop_reason=reason if stopped else None,
            wall_seconds=rec["seconds"],
            tokens=rec["tokens"],
            lower_is_better=task.lower_is_better,
            outputs=rec["outputs"] or None,
        )
    values = [
        ObjectiveValue(
            task=o.task.name,
            metric=o.metric,
            direction=o.direction,
            weight=o.weight,
            value=task_scores[o.task.name].metric(o.metric),
        )
        for o in objectives
    ]
    return FitnessResult(
        split=split,
        tasks=task_scores,
        objectives=values,
        wall_seconds=time.perf_counter() - start,
        tokens=sum(r["tokens"] for r in scored.values()),
        stopped_early=stopped,
        stop_reason=reason,
        must_beat=must_beat,
        upper_bound=bound,
        meta={"early_stopping": why_not or "racing"},
    )


def _why_no_race(objectives, split, es, must_beat) -> str | None:
    if es is None or not es.enabled:
        return "off"
    if must_beat is None:
        return "no must_beat given"
    if split != "calibration":
        return f"only on the calibration split, not {split}"
    for o in objectives:
        if not o.raceable:
            return f"objective on task {o.task.name!r} is not a mean of [0, 1] scores"
    return None
