"""Exact match by teacher-forced argmax: one forward pass instead of a generation loop.

With targets ``y_1…y_m`` = the answer's tokens (+ EOS when ``append_eos``), the example scores 1
iff ``argmax p(· | prompt, y_<k) = y_k`` for every k. Greedy decoding emits exactly ``y`` iff each
of its steps picks ``y_k`` given the same prefix — the same condition — so this equals greedy
exact match (stopping at EOS, no extraction, no stripping) whenever the answer has one tokenisation
(always true for character tokenizers; a BPE model could greedily spell the same string with other
tokens, which greedy+string comparison accepts and this rejects). It needs the answer to be known,
and costs one forward of ``len(prompt) + m`` tokens, batched, instead of m sequential steps
(:meth:`~evomerge.fitness.engines.base.InferenceEngine.forced_exact_match`).
"""

from __future__ import annotations

from typing import Literal

from evomerge.errors import ConfigError
from evomerge.fitness.scorers.base import ScoreBatch, Scorer, ScorerOptions, encode_continuation


class ForcedExactMatchOptions(ScorerOptions):
    """``append_eos`` (default true): the model must also end the answer there."""

    type: Literal["exact_match_forced"] = "exact_match_forced"
    append_eos: bool = True


class ForcedExactMatch(Scorer):
    Options = ForcedExactMatchOptions
    needs = ("answer",)

    def score(self, engine, examples, *, batch_size=16):
        tok = engine.tokenizer
        eos = tok.eos_token_id
        if self.cfg.append_eos and eos is None:
            raise ConfigError("scorer.append_eos: true, but the tokenizer has no eos_token")
        requests = []
        for ex in examples:
            target = encode_continuation(tok, ex.answer)
            requests.append((self.encode_prompt(tok, ex), target + [int(eos)] if self.cfg.append_eos else target))
        out = engine.forced_exact_match(requests, batch_size=batch_size)
        return ScoreBatch(scores=[float(m) for m in out.matches], tokens=out.tokens)
