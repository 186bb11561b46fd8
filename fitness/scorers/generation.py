"""Exact match on greedy generations: batched, left-padded, with a KV cache.

Left padding puts every prompt's last token in the last column, so one argmax over column −1
gives each row's next token. Pads are masked out of attention and the position ids count only
real tokens (``cumsum(mask) − 1``), so a padded row computes what it would alone: Llama's rotary
angles and GPT-2's learned positions both see 0…n−1. The cache holds the keys/values of the
prompt and every generated token; each later step feeds one token per row, extends the mask by a
column of ones and advances the position by one.

A row finishes at an EOS id, when its text contains a stop string, or after ``max_new_tokens``;
finished rows are fed padding (their outputs are ignored) until every row is done. Greedy only:
sampled decoding would make fitness noisy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, ValidationInfo, field_validator

from evomerge.errors import ConfigError
from evomerge.fitness.scorers.base import (
    ScoreBatch,
    Scorer,
    ScorerOptions,
    eos_ids,
    length_batches,
    logits_of,
    model_device,
    pad_id,
)
from evomerge.fitness.scorers.extract import check_group, check_regex, is_callable_ref, make_extractor


def greedy_generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    batch_size: int = 16,
) -> tuple[list[str], list[list[int]], int]:
    """Greedy continuations of tokenised prompts.

    Returns ``(texts, new_ids, tokens)``: the decoded continuation of each prompt cut before the
    first EOS and the first stop string, the generated ids (EOS included when produced), and the
    number of tokens processed (prompt tokens + generated tokens).
    """
    device = model_device(model)
    eos = eos_ids(model, tokenizer)
    pad = pad_id(tokenizer)
    texts: list[str | None] = [None] * len(prompts)
    new_ids: list[list[int] | None] = [None] * len(prompts)
    tokens = 0
    with torch.inference_mode():
        for batch in length_batches([len(p) for p in prompts], batch_size):
            b_texts, b_ids, b_tokens = _generate_batch(
                model,
                tokenizer,
                [prompts[i] for i in batch],
                max_new_tokens=max_new_tokens,
                stop=stop,
                eos=eos,
                pad=pad,
                device=device,
            )
            tokens += b_tokens
            for row, i in enumerate(batch):
                texts[i] = b_texts[row]
                new_ids[i] = b_ids[row]
    return texts, new_ids, tokens  # type: ignore[return-value]


def _generate_batch(model, tokenizer, prompts, *, max_new_tokens, stop, eos, pad, device):
    n = len(prompts)
    if any(len(p) == 0 for p in prompts):
        raise ConfigError("a prompt encodes to zero tokens; give it text or set prepend_bos: true")
    width = max(len(p) for p in prompts)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[row, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    tokens = int(mask.sum())

    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    past = getattr(out, "past_key_values", None)
    logits = logits_of(out)[:, -1]
    generated: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    full_ids = ids  # only used when the model keeps no cache
    for step in range(max_new_tokens):
        nxt = logits.argmax(dim=-1)
        for row in range(n):
            if done[row]:
                continue
            tok = int(nxt[row])
            generated[row].append(tok)
            tokens += 1
            if tok in eos:
                done[row] = True
            elif stop and _has_stop(tokenizer.decode(generated[row]), stop):
                done[row] = True
        if all(done) or step == max_new_tokens - 1:
            break
        feed = torch.tensor([pad if done[r] else generated[r][-1] for r in range(n)], dtype=torch.long, device=device)[
            :, None
        ]
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        positions = positions[:, -1:] + 1
        if past is not None:
            out = model(
                input_ids=feed, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=True
            )
            past = getattr(out, "past_key_values", None)
            if past is None:
                raise RuntimeError("the model returned a cache on the first step but not on a later one")
        else:  # a model without a cache (e.g. a custom module): recompute the whole sequence
            full_ids = torch.cat([full_ids, feed], dim=1)
            full_pos = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=full_ids, attention_mask=mask, position_ids=full_pos)
        logits = logits_of(out)[:, -1]

    texts = []
    for row in range(n):
        gen = generated[row]
        cut = next((k for k, t in enumerate(gen) if t in eos), len(gen))
        text = tokenizer.decode(gen[:cut])
        texts.append(_cut_at_stop(text, stop))
    return texts, generated, tokens


def _has_stop(text: str, stop: Sequence[str]) -> bool:
    return any(s and s in text for s in stop)


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        if s:
            k = text.find(s)
            if k != -1:
                cut = min(cut, k)
    return text[:cut]


class ExactMatchOptions(ScorerOptions):
    """``max_new_tokens``; ``stop`` strings end a generation; ``extract``: ``None`` (the whole text),
    a regex whose group ``extract_group`` is the answer, or ``"pkg.mod:fn"`` (text -> answer);
    ``strip`` surrounding whitespace before comparing (default true); ``lowercase``."""

    type: Literal["exact_match"] = "exact_match"
    max_new_tokens: int = Field(16, ge=1)
    stop: list[str] = Field(default_factory=list)
    extract: str | None = None
    extract_group: int | str = 1
    strip: bool = True
    lowercase: bool = False

    @field_validator("extract")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None and not is_callable_ref(value):
            check_regex(value)
        return value

    @field_validator("extract_group")
    @classmethod
    def _group_exists(cls, value: int | str, info: ValidationInfo) -> int | str:
        spec = info.data.get("extract")
        if spec is not None and not is_callable_ref(spec):
            check_group(check_regex(spec), value)
        return value


class GenerationExactMatch(Scorer):
    """1.0 when the extracted answer equals the reference (after optional strip / lowercase)."""

    Options = ExactMatchOptions
    needs = ("answer",)

    def __init__(self, cfg, *, prepend_bos=None):
        super().__init__(cfg, prepend_bos=prepend_bos)
        self.extract = make_extractor(cfg.extract, cfg.extract_group)

    def normalise(self, text: str | None) -> str | None:
        if text is None:
            return None
        if self.cfg.strip:
            text = text.strip()
        if self.cfg.lowercase:
            text = text.lower()
        return text

    def score(self, model, tokenizer, examples, *, batch_size=16):
        prompts = [self.encode_prompt(tokenizer, ex.prompt) for ex in examples]
        texts, _, tokens = greedy_generate(
            model, tokenizer, prompts, max_new_tokens=self.cfg.max_new_tokens, stop=self.cfg.stop, batch_size=batch_size
        )
        scores = []
        for ex, text in zip(examples, texts):
            got = self.normalise(self.extract(text))
            scores.append(float(got is not None and got == self.normalise(ex.answer)))
        return ScoreBatch(scores=scores, tokens=tokens, outputs=texts)
