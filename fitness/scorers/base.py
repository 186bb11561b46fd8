"""What every scorer shares: the Example it scores, its typed options, and tokenisation.

A scorer maps a list of examples to one float per example (``ScoreBatch.scores``, aligned with the
input order) and counts the tokens it pushed through the model (prompt + continuation tokens
of every forward row, padding excluded, plus generated tokens). It reaches the model only through
an :class:`~evomerge.fitness.engines.base.InferenceEngine` (generation, log-likelihoods, forced
exact match on token ids); the scorer itself tokenises, with ``engine.tokenizer`` and the task's
:class:`~evomerge.fitness.prompts.PromptFormat`.

Each scorer class declares its options as a pydantic model in ``Options`` (a subclass of
:class:`ScorerOptions` whose ``type`` is a one-value ``Literal``); the task config's ``scorer``
section is the discriminated union of every registered scorer's options (see
:mod:`evomerge.fitness.scorers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

from evomerge.fitness.engines import InferenceEngine
from evomerge.fitness.prompts import PromptFormat, encode_continuation


@dataclass
class Example:
    """One scored item. ``prompt`` is already formatted by the task's template."""

    id: str
    prompt: str
    answer: str | None = None
    choices: list[str] | None = None
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoreBatch:
    scores: list[float]
    tokens: int = 0
    weights: list[float] | None = None  # per-example weights for token-weighted metrics (NLL)
    outputs: list[str] | None = None  # generated text, for inspection


class ScorerOptions(BaseModel):
    """Base of every scorer's options: unknown keys are errors; ``type`` is the registry name."""

    model_config = ConfigDict(extra="forbid")
    type: str
    # The config file's folder (set by parse_fitness_config, not part of the YAML): a callable
    # reference "mymod:fn" is also looked up there (evomerge.registry.import_object).
    _base_dir: Path | None = PrivateAttr(default=None)

    def search_dirs(self) -> tuple[Path, ...]:
        """Folders a callable reference's module is looked for in (before the current directory)."""
        return (self._base_dir,) if self._base_dir is not None else ()


class Scorer:
    """Base class: subclasses set ``Options`` and implement :meth:`score`."""

    #: the scorer's options model (its ``type`` field is ``Literal["<registry name>"]``)
    Options: ClassVar[type[ScorerOptions]] = ScorerOptions
    #: per-example scores lie in [0, 1] (racing bounds need a known range)
    bounded: bool = True
    #: lower scores are better (NLL)
    lower_is_better: bool = False
    #: example fields a scorer needs beyond ``prompt``
    needs: tuple[str, ...] = ()

    def __init__(self, cfg, *, prompts: PromptFormat | None = None):
        self.cfg = cfg
        self.prompts = prompts if prompts is not None else PromptFormat()

    def score(self, engine: InferenceEngine, examples: Sequence[Example], *, batch_size: int = 16) -> ScoreBatch:
        """One score per example, through ``engine`` (never the model itself)."""
        raise NotImplementedError

    def encode_prompt(self, tokenizer, example: Example) -> list[int]:
        """The example's prompt ids: chat template, system prompt, few-shot examples, BOS
        (:class:`~evomerge.fitness.prompts.PromptFormat`)."""
        return self.prompts.encode(tokenizer, example.prompt)


__all__ = ["Example", "PromptFormat", "ScoreBatch", "Scorer", "ScorerOptions", "encode_continuation"]
