"""Exact match by teacher-forced argmax: one forward pass instead of a generation loop.

With targets ``y_1…y_m`` = the answer's tokens (+ EOS when ``append_eos``), the example scores 1
iff ``argmax p(· | prompt, y_<k) = y_k`` for every k. Greedy decoding emits exactly ``y`` iff each
of its steps picks ``y_k`` given the same prefix — the same condition — so this equals greedy
exact match (stopping at EOS, no extraction, no stripping) whenever the answer has one tokenisation
(always true for character tokenizers; a BPE model could greedily spell the same string with other
tokens, which greedy+string comparison accepts and this rejects). It needs the answer to be known,
and costs one forward of ``len(prompt) + m`` tokens, batched, instead of m sequential steps.
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


class ForcedExactMatchOptions(ScorerOptions):
    """``append_eos`` (default true): the model must also end the answer there."""

    type: Literal["exact_match_forced"] = "exact_match_forced"
    append_eos: bool = True


class ForcedExactMatch(Scorer):
    Options = ForcedExactMatchOptions
    needs = ("answer",)

    def score(self, model, tokenizer, examples, *, batch_size=16):
        seqs, spans, targets = [], [], []
        eos = tokenizer.eos_token_id
        for ex in examples:
            prompt = self.encode_prompt(tokenizer, ex.prompt)
            target = encode_continuation(tokenizer, ex.answer)
            if self.cfg.append_eos:
                if eos is None:
                    raise ValueError("append_eos needs a tokenizer with an eos_token")
                target = target + [int(eos)]
            seqs.append(prompt + target)
            spans.append((len(prompt), len(prompt) + len(target)))
            targets.append(torch.tensor(target, dtype=torch.long))
        _, argmaxes, tokens = forced_logprobs(model, seqs, spans, batch_size=batch_size, pad=pad_id(tokenizer))
        scores = [float(bool(torch.equal(am, t))) for am, t in zip(argmaxes, targets)]
        return ScoreBatch(scores=scores, tokens=tokens)
