"""Greedy generation for :class:`~evomerge.fitness.engines.hf.HFEngine`: ``model.generate``, a
hand-written KV-cache loop, and transformers' continuous batching.

All three left-pad a batch (every prompt's last token sits in the last column), feed position
ids that count only real tokens (``cumsum(mask) − 1``: ``generate`` derives the same from the
mask), so a padded row computes what it would alone — Llama's rotary angles and GPT-2's learned
positions both see 0…n−1 — and cut every row with the same rule,
:func:`~evomerge.fitness.engines.base.finish_generation` (through the first EOS, or through the
token that completes a stop string). Greedy only: sampled decoding would make fitness noisy.

* :func:`generate_hf`: ``model.generate`` with a clean greedy ``GenerationConfig`` (the model's own
  generation defaults — repetition penalties, suppressed tokens — are kept out, so the result is
  plain argmax decoding), stop strings through transformers' ``StopStringCriteria`` built with the
  tokenizer (or :class:`TextStop` for strings it cannot map onto the vocabulary), optionally a
  static cache;
* :func:`generate_loop`: the loop for any causal LM module, including ones without ``generate`` or
  without a cache (those recompute the whole sequence each step). It passes the cache back under
  the name the model returned it (``cache`` in transformers 5, never the deprecated
  ``past_key_values=`` there), and asks for only the last position's logits on the first pass;
* :func:`generate_continuous`: ``model.generate_batch`` (paged attention, continuous batching;
  stop strings are applied afterwards, so rows run to EOS or ``max_new_tokens``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence

import torch

from evomerge.fitness.engines.base import check_prompts, cut_at_stop, finish_generation, has_stop


def left_pad(prompts: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[row, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def logits_of(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output[0]


def output_cache(output) -> tuple[str | None, object]:
    """``(name, cache)`` of a forward's KV cache: the key the model returned it under (``cache`` in
    transformers 5, ``past_key_values`` before), or ``(None, None)`` for a model without one."""
    keys = output.keys() if hasattr(output, "keys") else ()
    for name in ("cache", "past_key_values"):
        if name in keys and output[name] is not None:
            return name, output[name]
    return None, None


@contextlib.contextmanager
def clean_generation_config(model, pad: int, eos: Collection[int]):
    """Make ``model.generation_config`` a plain greedy config for the duration of a call, so that
    no default from the checkpoint (repetition penalty, suppressed or forced tokens) applies."""
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig(
        do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=sorted(eos), bos_token_id=None
    )
    try:
        yield model.generation_config
    finally:
        model.generation_config = saved


def _greedy_config(max_new_tokens, pad, eos, cache="dynamic", compile=False):
    from transformers import CompileConfig, GenerationConfig

    cfg = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=sorted(eos),
        return_dict_in_generate=False,
    )
    if cache == "static" or compile:
        cfg.cache_implementation = "static"
    if compile:
        cfg.compile_config = CompileConfig()
    return cfg


class TextStop:
    """A stopping criterion on decoded text (a row is done once its continuation contains a stop
    string), for stop strings transformers' ``StopStringCriteria`` cannot map onto the vocabulary
    (it refuses strings with characters no token holds)."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_width: int):
        self.tokenizer, self.stop, self.start = tokenizer, list(stop), prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        rows = input_ids[:, self.start :].tolist()
        done = [has_stop(self.tokenizer.decode(r), self.stop) for r in rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def stop_criteria(tokenizer, stop: Sequence[str], prompt_width: int):
    """transformers' ``StopStringCriteria`` (the tokenizer passed, its vocabulary tables cached by
    transformers), or :class:`TextStop` where that cannot represent a stop string."""
    from transformers import StoppingCriteriaList, StopStringCriteria

    stop = [s for s in stop if s]
    if not stop:
        return None
    try:
        crit = StopStringCriteria(tokenizer=tokenizer, stop_strings=stop)
    except ValueError:  # "unable to identify tokens matching one or more of the supplied stop string(s)"
        crit = TextStop(tokenizer, stop, prompt_width)
    return StoppingCriteriaList([crit])


def generate_hf(model, tokenizer, prompts, *, max_new_tokens, stop, eos, pad, device, cache="dynamic", compile=False):
    """One batch through ``model.generate``; returns ``(texts, ids, tokens)``."""
    check_prompts(prompts)
    ids, mask = left_pad(prompts, pad, device)
    cfg = _greedy_config(max_new_tokens, pad, eos, cache, compile)
    criteria = stop_criteria(tokenizer, stop, ids.shape[1])
    with clean_generation_config(model, pad, eos):
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg, stopping_criteria=criteria)
    new = out[:, ids.shape[1] :].tolist()
    return _finish(tokenizer, prompts, new, eos, stop)


def generate_continuous(model, tokenizer, prompts, *, max_new_tokens, stop, eos, pad, batch_size):
    """All prompts at once through ``model.generate_batch`` (continuous batching, at most
    ``batch_size`` requests per step). The paged KV cache is sized to hold every request whole —
    not to a share of the device's free memory, transformers' default."""
    from transformers import ContinuousBatchingConfig

    check_prompts(prompts)
    cfg = _greedy_config(max_new_tokens, pad, eos)
    page = 64
    paging = ContinuousBatchingConfig(
        page_size=page,
        num_blocks=sum(-(-(len(p) + max_new_tokens) // page) for p in prompts),
        max_batch_tokens=sum(len(p) for p in prompts) + len(prompts),
        max_requests_per_batch=batch_size,
    )
    with clean_generation_config(model, pad, eos):
        results = model.generate_batch(
            inputs=[list(p) for p in prompts],
            generation_config=cfg,
            continuous_batching_config=paging,
            progress_bar=False,
        )
    outs = list(results.values())
    if len(outs) != len(prompts) or any(o.error for o in outs):
        bad = next((o.error for o in outs if o.error), f"{len(outs)} results for {len(prompts)} prompts")
        raise RuntimeError(f"continuous batching failed: {bad}")
    return _finish(tokenizer, prompts, [list(o.generated_tokens) for o in outs], eos, stop)


def _finish(tokenizer, prompts, new_ids, eos, stop):
    texts, kept, tokens = [], [], 0
    for p, ids in zip(prompts, new_ids):
        text, ids = finish_generation(tokenizer, ids, eos, stop)
        texts.append(text)
        kept.append(ids)
        tokens += len(p) + len(ids)
    return texts, kept, tokens


def generate_loop(model, tokenizer, prompts, *, max_new_tokens, stop, eos, pad, device, keep_last: bool):
    """One batch by the hand-written loop; ``keep_last``: the model takes ``logits_to_keep``."""
    check_prompts(prompts)
    n = len(prompts)
    ids, mask = left_pad(prompts, pad, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    tokens = int(mask.sum())
    extra = {"logits_to_keep": 1} if keep_last else {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
    cache_name, cache = output_cache(out)
    logits = logits_of(out)[:, -1]
    generated: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    full_ids = ids  # only used when the model keeps no cache
    for step in range(max_new_tokens):
        nxt = logits.argmax(dim=-1).tolist()
        for row in range(n):
            if done[row]:
                continue
            generated[row].append(nxt[row])
            tokens += 1
            if nxt[row] in eos:
                done[row] = True
            elif stop and has_stop(tokenizer.decode(generated[row]), stop):
                done[row] = True
        if all(done) or step == max_new_tokens - 1:
            break
        feed = torch.tensor([pad if done[r] else generated[r][-1] for r in range(n)], dtype=torch.long, device=device)
        feed = feed[:, None]
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        positions = positions[:, -1:] + 1
        if cache is not None:
            out = model(
                input_ids=feed, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_name: cache}
            )
            cache_name, cache = output_cache(out)
            if cache is None:
                raise RuntimeError("the model returned a cache on the first step but not on a later one")
        else:  # a model without a cache (e.g. a custom module): recompute the whole sequence
            full_ids = torch.cat([full_ids, feed], dim=1)
            full_pos = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=full_ids, attention_mask=mask, position_ids=full_pos)
        logits = logits_of(out)[:, -1]
    texts = []
    for gen in generated:  # the loop stopped each row where finish_generation would
        cut = next((k for k, t in enumerate(gen) if t in eos), len(gen))
        texts.append(cut_at_stop(tokenizer.decode(gen[:cut]), stop))
    return texts, generated, tokens
