"""lm-evaluation-harness requests answered by an inference engine, on token ids cached across candidates.

The harness asks three things of a model (its ``Instance.args``):

* ``loglikelihood``: ``(context, continuation)`` → ``(Σ log p(continuation | context), is_greedy)``;
* ``loglikelihood_rolling``: ``(text,)`` → Σ log p of the text's tokens after its first;
* ``generate_until``: ``(context, gen_kwargs)`` → the greedy continuation, cut at ``until`` /
  EOS, at most ``max_gen_toks`` (256 by default) tokens long.

:class:`RequestAnswerer` answers a list of them in one engine call per kind (generations grouped
by their stop strings and length), batched by the engine. Contexts are encoded by the tokenizer's
own convention and continuations without special tokens, as the native scorers do
(:func:`evomerge.fitness.scorers.choice.continuation_requests`), so a harness task and the same
task defined natively send the engine the same ids. The ids are cached per request text (for one
tokenizer), so a search encodes each request once, not once per candidate.

:func:`make_lm` wraps the same answers in an ``lm_eval.api.model.LM`` for the harness's own
``simple_evaluate`` loop (the tests compare the in-process path with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evomerge.errors import ConfigError
from evomerge.fitness.engines import InferenceEngine
from evomerge.fitness.scorers.choice import continuation_requests

REQUEST_TYPES = ("loglikelihood", "loglikelihood_rolling", "generate_until")
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's own default for HF models


def generation_settings(gen_kwargs: dict | None, task: str = "?") -> tuple[tuple[str, ...], int]:
    """``(until, max_gen_toks)`` of a ``generate_until`` request; sampling is one line (engines are greedy)."""
    kw = dict(gen_kwargs or {})
    if kw.get("do_sample") and float(kw.get("temperature", 1.0) or 0.0) > 0.0:
        raise ConfigError(
            f"lm-eval task {task!r} samples (do_sample: true, temperature {kw.get('temperature', 1.0)}); "
            "evomerge's engines decode greedily: set do_sample: false in its generation_kwargs"
        )
    until = kw.get("until") or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    return until, int(kw.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))


class RequestAnswerer:
    """Answers harness requests through an engine; one per task and worker (it holds the id cache)."""

    def __init__(self, task: str = "?"):
        self.task = task
        self._tokenizer: Any = None
        self._ids: dict[tuple, Any] = {}

    def _cache(self, tokenizer) -> dict[tuple, Any]:
        if tokenizer is not self._tokenizer:  # ids belong to one tokenizer
            self._tokenizer, self._ids = tokenizer, {}
        return self._ids

    def pair_ids(self, tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        cache = self._cache(tokenizer)
        missing = [p for p in dict.fromkeys(map(tuple, pairs)) if ("ll", *p) not in cache]
        for pair, req in zip(missing, continuation_requests(tokenizer, missing)):
            cache[("ll", *pair)] = req
        return [cache[("ll", *tuple(p))] for p in pairs]

    def text_ids(self, tokenizer, texts: Sequence[str]) -> list[list[int]]:
        cache = self._cache(tokenizer)
        for text in texts:
            if ("txt", text) not in cache:
                cache[("txt", text)] = list(tokenizer(text)["input_ids"])
        return [cache[("txt", t)] for t in texts]

    def answer(self, engine: InferenceEngine, kind: str, args: Sequence[tuple], *, batch_size: int):
        """``(results, tokens)`` for requests of one ``kind``, each given by its ``Instance.args``."""
        tok = engine.tokenizer
        if kind == "loglikelihood":
            out = engine.loglikelihood(self.pair_ids(tok, [a[:2] for a in args]), batch_size=batch_size)
            return [(item.total, item.greedy) for item in out.items], out.tokens
        if kind == "loglikelihood_rolling":
            seqs = self.text_ids(tok, [a[0] for a in args])
            if any(len(s) < 2 for s in seqs):
                raise ConfigError(f"lm-eval task {self.task!r}: a loglikelihood_rolling text encodes to < 2 tokens")
            out = engine.loglikelihood([(s[:1], s[1:]) for s in seqs], batch_size=batch_size)
            return [item.total for item in out.items], out.tokens
        if kind == "generate_until":
            prompts = self.text_ids(tok, [a[0] for a in args])
            groups: dict[tuple, list[int]] = {}  # same stop strings and length: one engine call
            for i, a in enumerate(args):
                groups.setdefault(generation_settings(a[1] if len(a) > 1 else None, self.task), []).append(i)
            texts: list[str | None] = [None] * len(args)
            tokens = 0
            for (until, max_new), idx in groups.items():
                out = engine.generate(
                    [prompts[i] for i in idx], max_new_tokens=max_new, stop_strings=until, batch_size=batch_size
                )
                tokens += out.tokens
                for i, text in zip(idx, out.texts):
                    texts[i] = text
            return texts, tokens
        raise ConfigError(f"lm-eval task {self.task!r}: request type {kind!r} is not supported; known: {REQUEST_TYPES}")


def make_lm(engine: InferenceEngine, batch_size: int = 16, answerer: RequestAnswerer | None = None):
    """An ``lm_eval.api.model.LM`` answering through ``engine`` (for the harness's own loop)."""
    from lm_eval.api.model import LM

    answerer = answerer or RequestAnswerer()

    class EngineLM(LM):
        def __init__(self):
            super().__init__()
            self.tokens = 0

        def _run(self, kind, requests):
            results, tokens = answerer.answer(engine, kind, [r.args for r in requests], batch_size=batch_size)
            self.tokens += tokens
            return results

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return self._run("loglikelihood", requests)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return self._run("loglikelihood_rolling", requests)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return self._run("generate_until", requests)

    return EngineLM()
