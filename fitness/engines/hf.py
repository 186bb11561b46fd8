"""The Hugging Face engine: any transformers causal LM (or a module with the same forward),
in process, on the live model.

Generation (``generation`` option): ``generate`` uses ``model.generate``; ``loop`` the hand-written
KV-cache loop; ``auto`` (default) picks ``generate`` for a model that has it and the loop for
a module that does not (see :mod:`evomerge.fitness.engines.hf_generate` for both, and
``docs/fitness.md`` for the measurements behind the default).

Teacher forcing (log-likelihoods, forced exact match): each batch is padded on the **right** —
real tokens then sit at positions 0…n−1 whatever the position scheme, and the causal mask keeps
padding out of every real token's context, so a row's logits equal those of the row alone. With
``logits_to_keep: true`` (default) the model projects only the positions whose next token is
scored (a boolean ``(batch, length)`` mask passed as ``logits_to_keep``; the LM head then runs on
those rows alone) instead of every position of every row.

GPU options, off by default (measured slower or unmeasured on CPU): ``cache: static`` (a static
KV cache in ``generate``), ``compile: true`` (a static cache and transformers' ``CompileConfig``:
``generate`` compiles the decoding step, on CUDA), ``continuous_batching: true``
(``model.generate_batch``). ``compile`` suits the live model (one object for the whole run); a
data-flow path model is a new object per candidate and would be recompiled each time.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from typing import Any, Literal

import torch

from evomerge.errors import ConfigError
from evomerge.fitness.engines.base import (
    EngineOptions,
    ForcedMatches,
    Generation,
    Loglik,
    Logliks,
    Request,
    length_batches,
)
from evomerge.fitness.engines.hf_generate import generate_continuous, generate_hf, generate_loop, logits_of


class HFOptions(EngineOptions):
    """The ``engine`` section for ``type: hf``."""

    type: Literal["hf"] = "hf"
    generation: Literal["auto", "generate", "loop"] = "auto"
    logits_to_keep: bool = True
    cache: Literal["dynamic", "static"] = "dynamic"
    compile: bool = False
    continuous_batching: bool = False


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    return 0


def eos_ids(model, tokenizer) -> set[int]:
    """The tokenizer's EOS id and the model's ``generation_config.eos_token_id`` (one or a list)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, (list, tuple)):
        ids.update(int(i) for i in extra)
    return ids


_KEEPS_LOGITS: dict[type, bool] = {}


def takes_logits_to_keep(model) -> bool:
    """Whether ``model.forward`` declares ``logits_to_keep`` (cached per class)."""
    cls = type(model)
    if cls not in _KEEPS_LOGITS:
        try:
            _KEEPS_LOGITS[cls] = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError, AttributeError):
            _KEEPS_LOGITS[cls] = False
    return _KEEPS_LOGITS[cls]


class HFEngine:
    """:class:`~evomerge.fitness.engines.base.InferenceEngine` over an in-memory HF-style model."""

    Options = HFOptions

    def __init__(self, model: Any, tokenizer: Any, options: HFOptions | None = None):
        self.options = options or HFOptions()
        self.model = None
        self.tokenizer = tokenizer
        self.rebind(model, tokenizer)

    def rebind(self, model: Any, tokenizer: Any = None) -> None:
        """Point at another module; nothing is computed until the next request."""
        if tokenizer is not None:
            self.tokenizer = tokenizer
        self.model = model

    # ---------------------------------------------------------------- generation
    def generation_mode(self) -> str:
        """``generate``, ``continuous`` or ``loop`` for the bound model."""
        can = hasattr(self.model, "generate") and callable(getattr(self.model, "can_generate", None))
        can = can and self.model.can_generate()
        mode = self.options.generation
        if self.options.continuous_batching:
            if not can:
                raise ConfigError("engine.continuous_batching: the model has no generate(); use generation: loop")
            return "continuous"
        if mode == "generate" and not can:
            raise ConfigError(f"engine.generation: generate, but {type(self.model).__name__} has no generate()")
        return "generate" if (mode == "generate" or (mode == "auto" and can)) else "loop"

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        stop_strings: Sequence[str] = (),
        eos: Collection[int] | None = None,
        batch_size: int = 16,
    ) -> Generation:
        model, tok = self.model, self.tokenizer
        eos = set(eos_ids(model, tok) if eos is None else eos)
        pad, device, mode = pad_id(tok), model_device(model), self.generation_mode()
        stop = list(stop_strings)
        texts: list[str | None] = [None] * len(prompts)
        new_ids: list[list[int] | None] = [None] * len(prompts)
        tokens = 0
        batches = list(length_batches([len(p) for p in prompts], batch_size))
        if mode == "continuous":  # the scheduler forms its own batches
            batches = [list(range(len(prompts)))] if prompts else []
        with torch.inference_mode():
            for batch in batches:
                rows = [prompts[i] for i in batch]
                kw = {"max_new_tokens": max_new_tokens, "stop": stop, "eos": eos, "pad": pad}
                if mode == "generate":
                    opts = self.options
                    out = generate_hf(model, tok, rows, device=device, cache=opts.cache, compile=opts.compile, **kw)
                elif mode == "continuous":
                    out = generate_continuous(model, tok, rows, batch_size=batch_size, **kw)
                else:
                    keep = self.options.logits_to_keep and takes_logits_to_keep(model)
                    out = generate_loop(model, tok, rows, device=device, keep_last=keep, **kw)
                b_texts, b_ids, b_tokens = out
                tokens += b_tokens
                for row, i in enumerate(batch):
                    texts[i], new_ids[i] = b_texts[row], b_ids[row]
        return Generation(texts=texts, ids=new_ids, tokens=tokens)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- teacher forcing
    def loglikelihood(self, requests: Sequence[Request], *, batch_size: int = 16) -> Logliks:
        items: list[Loglik] = []
        rows, tokens = self._forced(requests, batch_size=batch_size, logprobs=True)
        for (lp, am), (_, cont) in zip(rows, requests):
            t = torch.tensor(list(cont), dtype=torch.long)
            picked = lp.gather(1, t[:, None])
            items.append(
                Loglik(total=float(picked.sum()), mean=float(picked.mean()), length=len(t), greedy=torch.equal(am, t))
            )
        return Logliks(items=items, tokens=tokens)

    def forced_exact_match(self, requests: Sequence[Request], *, batch_size: int = 16) -> ForcedMatches:
        rows, tokens = self._forced(requests, batch_size=batch_size, logprobs=False)
        matches = [
            torch.equal(am, torch.tensor(list(cont), dtype=torch.long)) for (_, am), (_, cont) in zip(rows, requests)
        ]
        return ForcedMatches(matches=matches, tokens=tokens)

    def _forced(self, requests: Sequence[Request], *, batch_size: int, logprobs: bool):
        """Per request ``(log-softmax rows or None, argmax ids)`` over the continuation's positions,
        as float32 / int64 CPU tensors, and the tokens processed."""
        model = self.model
        device, pad = model_device(model), pad_id(self.tokenizer)
        keep = self.options.logits_to_keep and takes_logits_to_keep(model)
        seqs = []
        for ctx, cont in requests:
            if not ctx or not cont:
                raise ValueError("a teacher-forced request needs a non-empty context and continuation")
            seqs.append(list(ctx) + list(cont))
        out: list[Any] = [None] * len(requests)
        tokens = 0
        with torch.inference_mode():
            for batch in length_batches([len(s) for s in seqs], batch_size):
                width = max(len(seqs[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                wanted = torch.zeros((len(batch), width), dtype=torch.bool)
                for row, i in enumerate(batch):
                    n, a = len(seqs[i]), len(requests[i][0])
                    ids[row, :n] = torch.tensor(seqs[i], dtype=torch.long)
                    mask[row, :n] = 1
                    wanted[row, a - 1 : n - 1] = True  # position k predicts token k + 1
                    tokens += n
                extra = {"logits_to_keep": wanted.to(device)} if keep else {}
                logits = logits_of(model(input_ids=ids.to(device), attention_mask=mask.to(device), **extra))
                if keep:  # (number of wanted positions, vocab), row-major
                    parts = logits.split([len(requests[i][1]) for i in batch])
                else:
                    parts = [logits[row, len(requests[i][0]) - 1 : len(seqs[i]) - 1] for row, i in enumerate(batch)]
                for part, i in zip(parts, batch):
                    sl = part.float()
                    out[i] = (torch.log_softmax(sl, dim=-1).cpu() if logprobs else None, sl.argmax(dim=-1).cpu())
        return out, tokens
