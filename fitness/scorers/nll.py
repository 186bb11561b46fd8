"""Mean negative log-likelihood per token (lower is better).

Per example: ``nll = −(1/m) Σ_k log p(y_k | x, y_<k)`` over the answer's tokens y given the
prompt x; an example without an answer scores its whole text, every token after the first.
The task's ``perplexity`` metric is ``exp(Σ_i m_i nll_i / Σ_i m_i)`` (token-weighted, as usual);
its ``mean`` metric is the plain average of the per-example values.
"""

from __future__ import annotations

from typing import Literal

import torch

from evomerge.fitness.scorers.base import (
    ScoreBatch,
    Scorer,
    ScorerOptions,
    encode_continuation,
    forced_logprobs,
    pad_id,
)


class NLLOptions(ScorerOptions):
    """No options."""

    type: Literal["nll"] = "nll"


class MeanNLL(Scorer):
    Options = NLLOptions
    bounded = False
    lower_is_better = True

    def score(self, model, tokenizer, examples, *, batch_size=16):
        seqs, spans, targets = [], [], []
        for ex in examples:
            prompt = self.encode_prompt(tokenizer, ex.prompt)
            if ex.answer is not None:
                target = encode_continuation(tokenizer, ex.answer)
                seq, span = prompt + target, (len(prompt), len(prompt) + len(target))
            else:
                seq, span = prompt, (1, len(prompt))
            if span[1] <= span[0]:
                raise ValueError(f"example {ex.id!r}: nothing to score (fewer than 2 tokens or empty answer)")
            seqs.append(seq)
            spans.append(span)
            targets.append(torch.tensor(seq[span[0] : span[1]], dtype=torch.long))
        logps, _, tokens = forced_logprobs(model, seqs, spans, batch_size=batch_size, pad=pad_id(tokenizer))
        scores, weights = [], []
        for lp, t in zip(logps, targets):
            scores.append(float(-lp.gather(1, t[:, None]).mean()))
            weights.append(float(len(t)))
        return ScoreBatch(scores=scores, tokens=tokens, weights=weights)
