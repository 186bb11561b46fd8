"""What every scorer shares: the Example it scores, its typed options, tokenisation, and batched
forward passes.

A scorer maps a list of examples to one float per example (``ScoreBatch.scores``, aligned with the
input order) and counts the tokens it pushed through the model (prompt + continuation tokens
of every forward row, padding excluded, plus generated tokens).

Each scorer class declares its options as a pydantic model in ``Options`` (a subclass of
:class:`ScorerOptions` whose ``type`` is a one-value ``Literal``); the task config's ``scorer``
section is the discriminated union of every registered scorer's options (see
:mod:`evomerge.fitness.scorers`).

Teacher-forced scorers (forced exact match, choice log-likelihood, NLL) pad on the **right**:
real tokens then sit at positions 0…n−1 whatever the model's position scheme, and the causal mask
keeps padding out of every real token's context, so a row's logits equal those of the row alone.
Generation pads on the **left** (see :mod:`evomerge.fitness.scorers.generation`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from evomerge.errors import ConfigError


@dataclass
class Example:
    """One scored item. ``prompt`` is already formatted by the task's template."""

    id: str
    prompt: str
    answer: str | None = None
    choices: list[str] | None = None
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoreBatch:
    scores: list[float]
    tokens: int = 0
    weights: list[float] | None = None  # per-example weights for token-weighted metrics (NLL)
    outputs: list[str] | None = None  # generated text, for inspection


class ScorerOptions(BaseModel):
    """Base of every scorer's options: unknown keys are errors; ``type`` is the registry name."""

    model_config = ConfigDict(extra="forbid")
    type: str


class Scorer:
    """Base class: subclasses set ``Options`` and implement :meth:`score`."""

    #: the scorer's options model (its ``type`` field is ``Literal["<registry name>"]``)
    Options: ClassVar[type[ScorerOptions]] = ScorerOptions
    #: per-example scores lie in [0, 1] (racing bounds need a known range)
    bounded: bool = True
    #: lower scores are better (NLL)
    lower_is_better: bool = False
    #: example fields a scorer needs beyond ``prompt``
    needs: tuple[str, ...] = ()

    def __init__(self, cfg, *, prepend_bos: bool | None = None):
        self.cfg = cfg
        self.prepend_bos = prepend_bos

    def score(self, model, tokenizer, examples: Sequence[Example], *, batch_size: int = 16) -> ScoreBatch:
        raise NotImplementedError

    def encode_prompt(self, tokenizer, text: str) -> list[int]:
        return encode_prompt(tokenizer, text, self.prepend_bos)


def encode_prompt(tokenizer, text: str, prepend_bos: bool | None) -> list[int]:
    """Prompt ids. ``prepend_bos``: None = the tokenizer's own convention; True = make sure the
    first id is BOS; False = no special tokens at all."""
    ids = list(tokenizer(text, add_special_tokens=prepend_bos is None)["input_ids"])
    if prepend_bos:
        bos = tokenizer.bos_token_id
        if bos is None:
            raise ConfigError("prepend_bos: true, but the tokenizer has no bos_token")
        if not ids or ids[0] != bos:
            ids = [bos] + ids
    return ids


def encode_continuation(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eos_ids(model, tokenizer) -> set[int]:
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


def pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    return 0


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def logits_of(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output[0]


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first), to waste little padding."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def forced_logprobs(
    model, seqs: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], *, batch_size: int, pad: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """Teacher-forced next-token log-probabilities on chosen spans.

    For sequence ``s`` and span ``(a, b)`` (token positions a…b−1 are the targets), returns
    ``logp[k] = log softmax(logits[a−1+k])`` as a (b−a, V) float32 tensor, and the argmax ids at
    those positions — i.e. the model's prediction of tokens a…b−1 from their prefixes.
    Returns (logps, argmaxes, tokens_processed), aligned with ``seqs``.
    """
    device = model_device(model)
    logps: list[torch.Tensor | None] = [None] * len(seqs)
    argmaxes: list[torch.Tensor | None] = [None] * len(seqs)
    tokens = 0
    with torch.inference_mode():
        for batch in length_batches([len(s) for s in seqs], batch_size):
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(seqs[i])
                ids[row, :n] = torch.tensor(seqs[i], dtype=torch.long)
                mask[row, :n] = 1
                tokens += n
            logits = logits_of(model(input_ids=ids.to(device), attention_mask=mask.to(device)))
            for row, i in enumerate(batch):
                a, b = spans[i]
                if not 1 <= a <= b <= len(seqs[i]):
                    raise ValueError(f"span {(a, b)} outside a sequence of {len(seqs[i])} tokens")
                sl = logits[row, a - 1 : b - 1].float()
                logps[i] = torch.log_softmax(sl, dim=-1).cpu()
                argmaxes[i] = sl.argmax(dim=-1).cpu()
    return logps, argmaxes, tokens  # type: ignore[return-value]
