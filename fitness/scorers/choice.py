"""Multiple choice by log-likelihood.

For choice c with tokens ``c_1…c_m`` after the prompt x:
``ll(c) = Σ_k log p(c_k | x, c_<k)`` (``normalize: none``), ``ll(c) / m`` (``tokens``) or
``ll(c) / len(c in characters)`` (``chars``, lm-eval's ``acc_norm`` uses bytes). The prediction
is ``argmax_c ll(c)`` (first on ties); the example scores 1 iff it is the labelled choice.
Every (example, choice) pair is one row of a right-padded teacher-forced batch.
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


def continuation_logliks(
    model, tokenizer, pairs, *, batch_size: int, prepend_bos=None, encode_prompt=None
) -> tuple[list[float], list[int], list[bool], int]:
    """Summed log-likelihood of each ``(context, continuation)`` pair, its token count, whether
    the continuation is the greedy one, and the tokens processed."""
    seqs, spans, targets = [], [], []
    for context, continuation in pairs:
        ctx = encode_prompt(tokenizer, context) if encode_prompt else list(tokenizer(context)["input_ids"])
        cont = encode_continuation(tokenizer, continuation)
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to zero tokens")
        if not ctx:  # nothing to condition on: score the continuation from its first token on
            ctx, cont = cont[:1], cont[1:]
        seqs.append(ctx + cont)
        spans.append((len(ctx), len(ctx) + len(cont)))
        targets.append(torch.tensor(cont, dtype=torch.long))
    logps, argmaxes, tokens = forced_logprobs(model, seqs, spans, batch_size=batch_size, pad=pad_id(tokenizer))
    lls, lens, greedy = [], [], []
    for lp, am, t in zip(logps, argmaxes, targets):
        lls.append(float(lp.gather(1, t[:, None]).sum()))
        lens.append(len(t))
        greedy.append(bool(torch.equal(am, t)))
    return lls, lens, greedy, tokens


class ChoiceLoglikOptions(ScorerOptions):
    """``normalize``: ``none`` (summed log-likelihood), ``tokens`` or ``chars`` (divided by the
    continuation's length)."""

    type: Literal["choice_loglik"] = "choice_loglik"
    normalize: Literal["none", "tokens", "chars"] = "none"


class ChoiceLoglik(Scorer):
    Options = ChoiceLoglikOptions
    needs = ("choices", "label")

    def score(self, model, tokenizer, examples, *, batch_size=16):
        pairs, owner = [], []
        for i, ex in enumerate(examples):
            for choice in ex.choices:
                pairs.append((ex.prompt, choice))
                owner.append(i)
        lls, lens, _, tokens = continuation_logliks(
            model, tokenizer, pairs, batch_size=batch_size, encode_prompt=self.encode_prompt
        )
        per_example: list[list[float]] = [[] for _ in examples]
        for (_ctx, choice), ll, n, i in zip(pairs, lls, lens, owner):
            if self.cfg.normalize == "tokens":
                ll = ll / n
            elif self.cfg.normalize == "chars":
                ll = ll / max(len(choice), 1)
            per_example[i].append(ll)
        scores = []
        for ex, lls_i in zip(examples, per_example):
            pred = max(range(len(lls_i)), key=lambda k: (lls_i[k], -k))
            scores.append(float(pred == ex.label))
        return ScoreBatch(scores=scores, tokens=tokens)
