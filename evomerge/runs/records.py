"""The log record: its schema, and its encoding from a scored result and back.

One line of ``evaluations.jsonl`` per evaluated candidate (:class:`~evomerge.runs.store.RunStore`
writes it; JSON with sorted keys, NaN/inf as strings):

==================  ==========================================================================
``id``              the candidate's id (the driver's)
``genome``          the genome (float64 list), or ``{"path": "genomes/<id>.npy"}`` beyond
                    :data:`INLINE_GENOME_MAX` values
``meta``            the driver's metadata for the candidate
``recipe``          the request recipe the problem keeps (``None`` when the genome is the recipe)
``status``          ``ok`` | ``failed``; ``error``: the first line of the error, or ``None``
``objectives``      ``{name: value}`` in each objective's own direction
``values``          signed objective values, ``score``: their scalarisation
                    (:meth:`evomerge.objectives.Objectives.record_fields`); ``None`` unless ok
``per_example``     ``{task: [score per example]}`` (or ``{"path": ...}`` when large)
``fitness``         the fitness result without its per-task scores; ``split``: ``calibration``
``merge_seconds``   worker timings; ``eval_seconds``; ``worker``: which worker; ``attempt``:
                    re-submissions after a worker died
``asked``           candidates the driver had handed out when the result arrived (the
                    scheduler's ``proposed_total``): the resume replay's order of asks
``started``         wall-clock start and ``finished`` time (seconds since the epoch)
==================  ==========================================================================

:data:`evomerge.runs.store.VOLATILE_FIELDS` lists the fields that depend on the machine and clock.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import yaml

from evomerge.drivers.base import Candidate
from evomerge.evaluator.base import EvalResult
from evomerge.objectives import Objectives
from evomerge.runs.store import RunStore, as_float, to_jsonable
from evomerge.scheduler.events import Scored
from evomerge.scheduler.replay import KnownResult

#: Genomes longer than this are stored beside the log (``genomes/<id>.npy``), not inline.
INLINE_GENOME_MAX = 4096

#: Every field of a record, in the order of the table above.
RECORD_FIELDS = (
    "id",
    "genome",
    "meta",
    "recipe",
    "status",
    "error",
    "objectives",
    "values",
    "score",
    "per_example",
    "fitness",
    "split",
    "merge_seconds",
    "eval_seconds",
    "worker",
    "attempt",
    "asked",
    "started",
    "finished",
)


def make_record(
    objectives: Objectives, store: RunStore, candidate: Candidate, scored: Scored, *, recipe: dict[str, Any] | None
) -> dict[str, Any]:
    """The record of a new result (a large genome is written to ``genomes/`` here)."""
    result = scored.result
    genome = np.asarray(scored.genome, dtype=np.float64).reshape(-1)
    if genome.size > INLINE_GENOME_MAX:
        rel = f"genomes/{int(candidate.id)}.npy"
        store.write_array(rel, genome, what=f"the genome of candidate {candidate.id}")
        genome_field: Any = {"path": rel}
        recipe = None  # the genome is the recipe
    else:
        genome_field = genome.tolist()
    values = dict(result.objectives or {})
    fitness = result.fitness
    if isinstance(fitness, dict):
        fitness = {k: v for k, v in fitness.items() if k != "tasks"}  # per-example scores live in per_example
    finished = time.time()
    return {
        "id": int(candidate.id),
        "genome": genome_field,
        "meta": to_jsonable(candidate.meta or {}),
        "recipe": recipe,
        "status": result.status,
        "error": result.error_line if result.error else None,
        "objectives": values,
        **objectives.record_fields(values, result.ok),
        "per_example": result.per_example,
        "fitness": fitness,
        "split": "calibration",
        "merge_seconds": result.merge_seconds,
        "eval_seconds": result.eval_seconds,
        "worker": result.worker,
        "attempt": result.attempt,
        "asked": scored.proposed,
        "started": finished - result.busy_seconds,
        "finished": finished,
    }


def record_genome(store: RunStore, record: dict[str, Any]) -> list[float] | None:
    g = record.get("genome")
    if isinstance(g, dict) and "path" in g:
        return store.read_array(g["path"], field="genome", cid=record.get("id")).tolist()  # no link followed
    return g


def known_from_record(store: RunStore, record: dict[str, Any]) -> KnownResult:
    """A log record as the resume replay's :class:`~evomerge.scheduler.replay.KnownResult`."""
    per_example = store.per_example(record)  # one line naming the file when it cannot be read
    result = EvalResult(
        candidate_id=int(record["id"]),
        status=record["status"],
        objectives={k: as_float(v) for k, v in (record.get("objectives") or {}).items()},
        per_example=per_example,
        fitness=record.get("fitness"),
        error=record.get("error"),
        merge_seconds=float(record.get("merge_seconds") or 0.0),
        eval_seconds=float(record.get("eval_seconds") or 0.0),
        worker=record.get("worker") or "",
        attempt=int(record.get("attempt") or 0),
    )
    genome = record_genome(store, record)
    asked = record.get("asked")
    return KnownResult(
        result, None if genome is None else np.asarray(genome, dtype=np.float64), None if asked is None else int(asked)
    )


def best_score(records: list[dict[str, Any]]) -> float | None:
    """The highest ``score`` among ``records`` (``None`` when none has one)."""
    best = None
    for r in records:
        if r.get("score") is not None and (best is None or as_float(r["score"]) > best):
            best = as_float(r["score"])
    return best


def genome_file(problem: str, record: dict[str, Any]) -> str:
    """``best/recipe.yaml`` for a record whose genome is the recipe."""
    return yaml.safe_dump({"problem": problem, "genome": record["genome"]}, sort_keys=False)


__all__ = [
    "INLINE_GENOME_MAX",
    "RECORD_FIELDS",
    "best_score",
    "genome_file",
    "known_from_record",
    "make_record",
    "record_genome",
]
