"""Mean negative log-likelihood per token (lower is better).

Per example: ``nll = −(1/m) Σ_k log p(y_k | x, y_<k)`` over the answer's tokens y given the
prompt x; an example without an answer scores its whole text, every token after the first.
The task's ``perplexity`` metric is ``exp(Σ_i m_i nll_i / Σ_i m_i)`` (token-weighted, as usual);
its ``mean`` metric is the plain average of the per-example values.
"""

from __future__ import annotations

from typing import Literal

from evomerge.fitness.scorers.base import ScoreBatch, Scorer, ScorerOptions, encode_continuation


class NLLOptions(ScorerOptions):
    """No options."""

    type: Literal["nll"] = "nll"


class MeanNLL(Scorer):
    Options = NLLOptions
    bounded = False
    lower_is_better = True

    def score(self, engine, examples, *, batch_size=16):
        tok = engine.tokenizer
        requests = []
        for ex in examples:
            prompt = self.encode_prompt(tok, ex)
            if ex.answer is not None:
                request = (prompt, encode_continuation(tok, ex.answer))
            else:
                request = (prompt[:1], prompt[1:])
            if not request[0] or not request[1]:
                raise ValueError(f"example {ex.id!r}: nothing to score (fewer than 2 tokens or empty answer)")
            requests.append(request)
        out = engine.loglikelihood(requests, batch_size=batch_size)
        return ScoreBatch(
            scores=[-item.mean for item in out.items],
            tokens=out.tokens,
            weights=[float(item.length) for item in out.items],
        )
