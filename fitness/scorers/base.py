"""What every scorer shares: the Example it scores, its typed options, and tokenisation.

A scorer maps a list of examples to one float per example (``ScoreBatch.scores``, aligned with the
input order) and counts the tokens it pushed through the model (prompt + continuation tokens
of every forward row, padding excluded, plus generated tokens). It reaches the model only through
an :class:`~evomerge.fitness.engines.base.InferenceEngine` (generation, log-likelihoods, forced
exact match on token ids); the scorer itself tokenises, with ``engine.tokenizer``.

Each scorer class declares its options as a pydantic model in ``Options`` (a subclass of
:class:`ScorerOptions` whose ``type`` is a one-value ``Literal``); the task config's ``scorer``
section is the discriminated union of every registered scorer's options (see
:mod:`evomerge.fitness.scorers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from evomerge.errors import ConfigError
from evomerge.fitness.engines import InferenceEngine


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

    def __init__(self, cfg, *, prepend_bos: bool | None = None):
        self.cfg = cfg
        self.prepend_bos = prepend_bos

    def score(self, engine: InferenceEngine, examples: Sequence[Example], *, batch_size: int = 16) -> ScoreBatch:
        """One score per example, through ``engine`` (never the model itself)."""
        raise NotImplementedError

    def encode_prompt(self, tokenizer, example: Example) -> list[int]:
        return encode_prompt(tokenizer, example.prompt, self.prepend_bos)


def encode_prompt(tokenizer, text: str, prepend_bos: bool | None) -> list[int]:
    """Prompt ids. ``prepend_bos``: None = the tokenizer's own convention; True = make sure the
    first id is BOS; False = no special tokens at all."""
    ids = list(tokenizer(text, add_special_tokens=prepend_bos is None)["input_ids"])
    if prepend_bos:
        bos = tokenizer.bos_token_id
        if bos is None:
            raise ConfigError("prepend_bos: true, but the tokenizer has no bos_token")
        if not ids or ids[0] != bos:
            ids = [bos] + ids
    return ids


def encode_continuation(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
