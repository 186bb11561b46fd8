"""Loading a task from its config: the source type chooses the loader. Rows (jsonl, csv, parquet,
generators, HF datasets) become a :class:`~evomerge.fitness.task.Task` of examples; an lm-eval
task becomes a Task whose scorer is the harness's (:mod:`evomerge.fitness.lmeval`). This module
sits above both, so neither imports the other's loader.
"""

from __future__ import annotations

from pathlib import Path

from evomerge.fitness.config import TaskConfig, parse_task_config
from evomerge.fitness.lmeval import load_lmeval_task
from evomerge.fitness.sources import load_rows
from evomerge.fitness.task import Task, rows_to_examples


def load_task(cfg: TaskConfig | dict, *, base_dir: str | Path | None = None) -> Task:
    """Read the source, map fields, format prompts, validate every row; then draw the splits."""
    if isinstance(cfg, dict):
        cfg = parse_task_config(cfg, where=f"task {cfg.get('name', '?')!r}")
    base = Path(base_dir) if base_dir else None
    if cfg.source.type == "lmeval":
        return load_lmeval_task(cfg, base_dir=base)
    rows, where, lines = load_rows(cfg.source, task=cfg.name, base_dir=base)
    return Task(cfg, rows_to_examples(cfg, rows, where, lines), where)
