"""Scorers: one score per example. ``build(cfg, prepend_bos)`` picks one by ``cfg.type``."""

from __future__ import annotations

from evomerge.errors import ConfigError
from evomerge.fitness.scorers.base import Example, ScoreBatch, Scorer
from evomerge.fitness.scorers.choice import ChoiceLoglik
from evomerge.fitness.scorers.custom import CallableScorer
from evomerge.fitness.scorers.forced import ForcedExactMatch
from evomerge.fitness.scorers.generation import GenerationExactMatch, greedy_generate
from evomerge.fitness.scorers.nll import MeanNLL

SCORERS = {
    "exact_match": GenerationExactMatch,
    "exact_match_forced": ForcedExactMatch,
    "choice_loglik": ChoiceLoglik,
    "nll": MeanNLL,
    "callable": CallableScorer,
}


def build(cfg, *, prepend_bos: bool | None = None) -> Scorer:
    cls = SCORERS.get(cfg.type)
    if cls is None:
        raise ConfigError(f"unknown scorer {cfg.type!r}; known: {', '.join(SCORERS)}")
    return cls(cfg, prepend_bos=prepend_bos)


__all__ = ["Example", "ScoreBatch", "Scorer", "SCORERS", "build", "greedy_generate"]
