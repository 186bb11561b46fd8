"""A task = examples + prompt formatting + a scorer, with seeded, disjoint splits.

Splits: the pool of N examples (source order) is permuted once with
``numpy.random.default_rng(seed).permutation(N)``; the first ``calibration`` indices of the
permutation are the calibration split (in that shuffled order — the fixed order early stopping
reads prefixes of), the next ``validation`` (default: all the rest) the validation split, and the
last ``splits.fewshot`` (default: ``fewshot``) the few-shot split, whose first ``fewshot`` examples,
in that order, are shown before every prompt. The three are disjoint by construction and identical
for a given (source, seed); adding few-shot examples leaves the calibration split as it was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evomerge.errors import ConfigError
from evomerge.fitness import scorers
from evomerge.fitness.config import TaskConfig, parse_task_config
from evomerge.fitness.engines import InferenceEngine
from evomerge.fitness.prompts import PromptFormat
from evomerge.fitness.result import TaskScores
from evomerge.fitness.scorers.base import Example, ScoreBatch
from evomerge.fitness.sources import load_rows, row_place

SPLITS = ("calibration", "validation")
_DEFAULT_COLUMNS = {"id": "id", "prompt": "prompt", "answer": "answer", "choices": "choices", "label": "label"}


class Task:
    def __init__(self, cfg: TaskConfig, pool: list[Example], where: str, scorer=None):
        self.cfg = cfg
        self.name = cfg.name
        self.where = where
        self.pool = pool
        n = len(pool)
        n_cal, n_fs = cfg.splits.calibration, cfg.fewshot_pool
        if n_cal > n:
            raise ConfigError(f"task {self.name!r}: splits.calibration is {n_cal} but {where} has {n} examples")
        n_val = n - n_cal - n_fs if cfg.splits.validation is None else cfg.splits.validation
        if n_cal + max(n_val, 0) + n_fs > n:
            sizes = f"splits.calibration + validation = {n_cal} + {n_val}"
            if n_fs:
                sizes = f"splits.calibration + validation + fewshot = {n_cal} + {max(n_val, 0)} + {n_fs}"
            raise ConfigError(f"task {self.name!r}: {sizes} but {where} has {n} examples")
        perm = np.random.default_rng(cfg.splits.seed).permutation(n)
        self._indices = {"calibration": perm[:n_cal].tolist(), "validation": perm[n_cal : n_cal + n_val].tolist()}
        self._fewshot = perm[n - n_fs :].tolist() if n_fs else []  # the end of the shuffle, in its order
        if scorer is None:
            prompts = PromptFormat(
                task=self.name,
                chat_template=cfg.chat_template,
                system=cfg.system,
                shots=[_shot(cfg, ex) for ex in self.fewshot_examples()],
                separator=cfg.fewshot_separator,
                prepend_bos=cfg.prepend_bos,
            )
            scorer = scorers.build(cfg.scorer, prompts=prompts)
        self.scorer = scorer

    @property
    def bounded(self) -> bool:
        return self.scorer.bounded

    @property
    def lower_is_better(self) -> bool:
        return self.scorer.lower_is_better

    def fewshot_examples(self) -> list[Example]:
        """The task's ``fewshot`` examples: the first of the few-shot split, in its seeded order."""
        return [self.pool[i] for i in self._fewshot[: self.cfg.fewshot]]

    def check_tokenizer(self, tokenizer) -> None:
        """One line if ``tokenizer`` cannot render this task's prompts (a missing chat template)."""
        self.scorer.prompts.check(tokenizer)

    def split_size(self, split: str) -> int:
        return len(self._split_indices(split))

    def _split_indices(self, split: str) -> list[int]:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        return self._indices[split]

    def limit(self, split: str, n: int) -> None:
        """Keep only the first ``n`` examples of ``split`` (a quick look, e.g. ``evomerge eval --limit``)."""
        if n < 1:
            raise ConfigError(f"limit must be >= 1, got {n}")
        self._indices[split] = self._split_indices(split)[:n]

    def examples(self, split: str) -> list[Example]:
        """The split's examples in their fixed shuffled order; an empty split is an error."""
        idx = self._split_indices(split)
        if not idx:
            n_cal = len(self._indices["calibration"])
            raise ConfigError(
                f"task {self.name!r}: split {split!r} is empty ({self.where} has {len(self.pool)} examples, "
                f"calibration takes {n_cal})"
            )
        return [self.pool[i] for i in idx]

    def score(self, engine: InferenceEngine, examples: Sequence[Example], *, batch_size: int = 16) -> ScoreBatch:
        if not examples:
            return ScoreBatch(scores=[], tokens=0, weights=[] if not self.scorer.bounded else None)
        batch = self.scorer.score(engine, examples, batch_size=batch_size)
        if len(batch.scores) != len(examples):
            raise RuntimeError(f"scorer for task {self.name!r} returned {len(batch.scores)} scores for {len(examples)}")
        return batch

    def evaluate(
        self, engine: InferenceEngine, split: str = "calibration", *, batch_size: int = 16, limit: int | None = None
    ) -> TaskScores:
        """Score every example of ``split`` (or its first ``limit``): one score per example."""
        examples = self.examples(split)
        if limit is not None:
            examples = examples[:limit]
        start = time.perf_counter()
        batch = self.score(engine, examples, batch_size=batch_size)
        return TaskScores(
            task=self.name,
            split=split,
            example_ids=[e.id for e in examples],
            scores=batch.scores,
            n_total=self.split_size(split),
            weights=batch.weights,
            wall_seconds=time.perf_counter() - start,
            tokens=batch.tokens,
            lower_is_better=self.lower_is_better,
            outputs=batch.outputs,
        )

    def __repr__(self) -> str:
        return (
            f"Task({self.name!r}, scorer={self.cfg.scorer.type}, calibration={self.split_size('calibration')}, "
            f"validation={self.split_size('validation')})"
        )


def load_task(cfg: TaskConfig | dict, *, base_dir: str | Path | None = None) -> Task:
    """Read the source, map fields, format prompts, validate every row; then draw the splits."""
    if isinstance(cfg, dict):
        cfg = parse_task_config(cfg, where=f"task {cfg.get('name', '?')!r}")
    if cfg.source.type == "lmeval":
        from evomerge.fitness.lmeval import load_lmeval_task

        return load_lmeval_task(cfg, base_dir=Path(base_dir) if base_dir else None)
    rows, where, lines = load_rows(cfg.source, task=cfg.name, base_dir=Path(base_dir) if base_dir else None)
    pool = rows_to_examples(cfg, rows, where, lines)
    return Task(cfg, pool, where)


def rows_to_examples(cfg: TaskConfig, rows: list[dict], where: str, lines: list[int] | None = None) -> list[Example]:
    """``lines``: the file line of each row (from :func:`evomerge.fitness.sources.load_rows`), for messages.

    Every row must hold the columns the scorer needs and every column ``fields`` maps explicitly:
    a row without them would otherwise be scored differently from its neighbours (``nll`` without
    an answer scores the whole text) and silently skew the task's mean."""
    columns = {**_DEFAULT_COLUMNS, **cfg.fields}
    needs = set(scorers.SCORERS.get(cfg.scorer.type).needs) | set(cfg.fields)
    if cfg.chat_template is not False and cfg.scorer.type == "nll":
        needs.add("answer")  # the assistant's turn is what is scored: "the whole text" has no place in a chat
    if cfg.template is None:
        needs.add("prompt")
    required = sorted(needs, key=lambda f: (f != "prompt", f))
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        for field in required:
            if columns[field] not in row:
                raise ConfigError(
                    f"task {cfg.name!r}: column {columns[field]!r} (field {field}) missing in {row_place(where, lines, i)}; "
                    f"columns: {', '.join(map(str, row))}"
                )
        values = {f: row[c] for f, c in columns.items() if c in row}
        ctx = {**row, **values}
        prompt = (
            _format(cfg.template, ctx, cfg, row_place(where, lines, i), "template")
            if cfg.template
            else str(values["prompt"])
        )
        answer = values.get("answer")
        if answer is not None:
            answer = (
                _format(cfg.answer_template, ctx, cfg, row_place(where, lines, i), "answer_template")
                if cfg.answer_template
                else str(answer)
            )
        choices = values.get("choices")
        label = values.get("label")
        if "choices" in needs:
            choices, label = _check_choice(cfg, row_place(where, lines, i), choices, label)
        ex_id = str(values["id"]) if "id" in values and values["id"] is not None else str(i)
        if ex_id in seen:
            raise ConfigError(
                f"task {cfg.name!r}: duplicate example id {ex_id!r} in {row_place(where, lines, i)} (first at {row_place(where, lines, seen[ex_id])})"
            )
        seen[ex_id] = i
        examples.append(Example(id=ex_id, prompt=prompt, answer=answer, choices=choices, label=label))
    if not examples:
        raise ConfigError(f"task {cfg.name!r}: {where} has no examples")
    return examples


def _shot(cfg: TaskConfig, ex: Example) -> tuple[str, str]:
    """A few-shot example as (prompt, answer): its answer, or for a choice task the labelled choice."""
    if ex.answer is not None:
        return ex.prompt, ex.answer
    if ex.choices is not None and ex.label is not None:
        return ex.prompt, ex.choices[ex.label]
    raise ConfigError(f"task {cfg.name!r}: few-shot example {ex.id!r} has no answer to show")


def _format(template: str, ctx: dict, cfg: TaskConfig, place: str, key: str) -> str:
    try:
        return template.format_map(ctx)
    except KeyError as exc:
        raise ConfigError(f"task {cfg.name!r}: {key} names {{{exc.args[0]}}}, not a column of {place}") from None
    except (IndexError, ValueError) as exc:
        raise ConfigError(f"task {cfg.name!r}: bad {key} {template!r} ({exc})") from None


def _check_choice(cfg, place, choices, label):
    if isinstance(choices, str) or not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise ConfigError(f"task {cfg.name!r}: {place}: choices must be a list of >= 2 strings, got {choices!r}")
    choices = [str(c) for c in choices]
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in choices:
            raise ConfigError(f"task {cfg.name!r}: {place}: label {label!r} is not one of the choices")
        label = choices.index(label)
    try:
        label = int(label)
    except (TypeError, ValueError):
        raise ConfigError(f"task {cfg.name!r}: {place}: label must be an index or a choice, got {label!r}") from None
    if not 0 <= label < len(choices):
        raise ConfigError(f"task {cfg.name!r}: {place}: label {label} out of range for {len(choices)} choices")
    return choices, label
