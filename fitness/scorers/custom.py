"""A user scorer named by import path: ``scorer: {type: callable, fn: "pkg.mod:fn", params: {…}}``.

Called as ``fn(model, tokenizer, examples, **params)`` with the engine's bound model and tokenizer
(the one scorer that sees the model itself: it is the user's escape hatch); returns one float per example (in order),
or ``(scores, tokens_processed)``. Declare ``bounded: true`` when scores lie in [0, 1] (early
stopping needs it) and ``higher_is_better: false`` for a loss.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from evomerge.errors import EvomergeError
from evomerge.fitness.scorers.base import ScoreBatch, Scorer, ScorerOptions
from evomerge.registry import resolve_callable


class CallableOptions(ScorerOptions):
    """``fn: "pkg.mod:fn"`` (required), ``params`` passed as keyword arguments, ``bounded`` (scores
    in [0, 1], default false), ``higher_is_better`` (default true)."""

    type: Literal["callable"] = "callable"
    fn: str
    params: dict[str, Any] = Field(default_factory=dict)
    bounded: bool = False
    higher_is_better: bool = True


class CallableScorer(Scorer):
    Options = CallableOptions

    def __init__(self, cfg, *, prompts=None):
        super().__init__(cfg, prompts=prompts)
        self.fn = resolve_callable(cfg.fn, what="scorer.fn", search=cfg.search_dirs())
        self.bounded = cfg.bounded
        self.lower_is_better = not cfg.higher_is_better

    def score(self, engine, examples, *, batch_size=16):
        out = self.fn(engine.model, engine.tokenizer, list(examples), **self.cfg.params)
        tokens = 0
        if isinstance(out, tuple) and len(out) == 2:
            out, tokens = out
        scores = [float(s) for s in out]
        if len(scores) != len(examples):
            raise EvomergeError(f"scorer {self.cfg.fn}: returned {len(scores)} scores for {len(examples)} examples")
        for ex, s in zip(examples, scores):
            if math.isnan(s) or (self.bounded and not 0.0 <= s <= 1.0):
                raise EvomergeError(
                    f"scorer {self.cfg.fn}: example {ex.id!r} scored {s}, expected a value in [0, 1]"
                    if self.bounded
                    else f"scorer {self.cfg.fn}: example {ex.id!r} scored NaN"
                )
        return ScoreBatch(scores=scores, tokens=int(tokens))
