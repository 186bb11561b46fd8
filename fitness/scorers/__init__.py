"""Scorers: one score per example, one registry, typed options.

``SCORERS`` maps a scorer's ``type`` to its class; each class carries its options model
(``Scorer.Options``), and :data:`ScorerConfig` — the task config's ``scorer`` section — is the
discriminated union (on ``type``) of those models, so an unknown type, an unknown option or a bad
value is one did-you-mean line from :mod:`evomerge.validation`.

A new scorer is one module here (its ``Options`` with ``type: Literal["name"]`` and a
:class:`~evomerge.fitness.scorers.base.Scorer` subclass) plus one ``SCORERS.register`` line below.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from evomerge.errors import ConfigError
from evomerge.fitness.prompts import PromptFormat
from evomerge.fitness.scorers.base import Example, ScoreBatch, Scorer, ScorerOptions
from evomerge.fitness.scorers.choice import ChoiceLoglik
from evomerge.fitness.scorers.custom import CallableScorer
from evomerge.fitness.scorers.forced import ForcedExactMatch
from evomerge.fitness.scorers.generation import GenerationExactMatch
from evomerge.fitness.scorers.nll import MeanNLL
from evomerge.registry import Registry
from evomerge.validation import format_validation_error

SCORERS = Registry("scorer")
for _cls in (GenerationExactMatch, ForcedExactMatch, ChoiceLoglik, MeanNLL, CallableScorer):
    SCORERS.register(_cls.Options.model_fields["type"].default, _cls)

#: The ``scorer`` section of a task: one of the registered scorers' options, chosen by ``type``.
ScorerConfig = Annotated[Union[tuple(SCORERS.get(n).Options for n in SCORERS)], Field(discriminator="type")]  # noqa: UP007
_ADAPTER: TypeAdapter = TypeAdapter(ScorerConfig)


def parse_scorer(data: Any, *, where: str = "scorer") -> ScorerOptions:
    """A scorer section (a mapping, or options already parsed) as its options model."""
    if isinstance(data, ScorerOptions):
        return data
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "", ScorerConfig, layout="path", prefix=f"{where}.")) from None


def build(cfg: ScorerOptions | dict, *, prompts: PromptFormat | None = None) -> Scorer:
    """The scorer for a ``scorer`` section (options or a mapping); ``prompts``: how the task's
    prompts become ids (default: the tokenizer's plain convention)."""
    options = parse_scorer(cfg)
    return SCORERS.get(options.type)(options, prompts=prompts)


__all__ = [
    "Example",
    "SCORERS",
    "ScoreBatch",
    "Scorer",
    "ScorerConfig",
    "ScorerOptions",
    "build",
    "parse_scorer",
]
