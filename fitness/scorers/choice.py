"""Multiple choice by log-likelihood.

For choice c with tokens ``c_1…c_m`` after the prompt x:
``ll(c) = Σ_k log p(c_k | x, c_<k)`` (``normalize: none``), ``ll(c) / m`` (``tokens``) or
``ll(c) / len(c in characters)`` (``chars``, lm-eval's ``acc_norm`` uses bytes). The prediction
is ``argmax_c ll(c)`` (first on ties); the example scores 1 iff it is the labelled choice.
Every (example, choice) pair is one request to
:meth:`~evomerge.fitness.engines.base.InferenceEngine.loglikelihood`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from evomerge.fitness.engines import InferenceEngine, Logliks
from evomerge.fitness.scorers.base import ScoreBatch, Scorer, ScorerOptions, encode_continuation


def continuation_requests(
    tokenizer, pairs: Sequence[tuple[list[int] | str, str]], encode: Callable[[str], list[int]] | None = None
) -> list[tuple[list[int], list[int]]]:
    """Token-id requests for ``(context, continuation)`` pairs. A context is ids already, or text
    (``encode``d, default: the tokenizer's own convention). An empty context scores the
    continuation from its first token on."""
    requests = []
    for context, continuation in pairs:
        if isinstance(context, str):
            ctx = encode(context) if encode else list(tokenizer(context)["input_ids"])
        else:
            ctx = list(context)
        cont = encode_continuation(tokenizer, continuation)
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to zero tokens")
        if not ctx:  # nothing to condition on: score the continuation from its first token on
            ctx, cont = cont[:1], cont[1:]
        requests.append((ctx, cont))
    return requests


def continuation_logliks(engine: InferenceEngine, pairs, *, batch_size: int, encode=None) -> Logliks:
    """Summed log-likelihood (and length, greediness) of each ``(context, continuation)`` pair."""
    return engine.loglikelihood(continuation_requests(engine.tokenizer, pairs, encode), batch_size=batch_size)


class ChoiceLoglikOptions(ScorerOptions):
    """``normalize``: ``none`` (summed log-likelihood), ``tokens`` or ``chars`` (divided by the
    continuation's length)."""

    type: Literal["choice_loglik"] = "choice_loglik"
    normalize: Literal["none", "tokens", "chars"] = "none"


class ChoiceLoglik(Scorer):
    Options = ChoiceLoglikOptions
    needs = ("choices", "label")

    def score(self, engine, examples, *, batch_size=16):
        pairs, owner = [], []
        for i, ex in enumerate(examples):
            prompt = self.encode_prompt(engine.tokenizer, ex)
            for choice in ex.choices:
                pairs.append((prompt, choice))
                owner.append(i)
        out = continuation_logliks(engine, pairs, batch_size=batch_size)
        per_example: list[list[float]] = [[] for _ in examples]
        for (_ctx, choice), item, i in zip(pairs, out.items, owner):
            ll = item.total
            if self.cfg.normalize == "tokens":
                ll = ll / item.length
            elif self.cfg.normalize == "chars":
                ll = ll / max(len(choice), 1)
            per_example[i].append(ll)
        scores = []
        for ex, lls_i in zip(examples, per_example):
            pred = max(range(len(lls_i)), key=lambda k: (lls_i[k], -k))
            scores.append(float(pred == ex.label))
        return ScoreBatch(scores=scores, tokens=out.tokens)
