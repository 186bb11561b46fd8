"""The inference-engine protocol: the only way scorers reach a model.

An engine answers three kinds of request on token ids (tokenisation and prompt rendering stay
with the scorers, so every engine sees the same ids):

* :meth:`InferenceEngine.generate` — greedy continuations of prompts, each cut at the first EOS id
  or stop string, at most ``max_new_tokens`` long;
* :meth:`InferenceEngine.loglikelihood` — for ``(context, continuation)`` pairs, the summed and
  mean log-probability of the continuation given the context, its token count, and whether it is
  the greedy continuation (argmax at every position);
* :meth:`InferenceEngine.forced_exact_match` — only that last flag (one teacher-forced pass, no
  log-softmax), for ``exact_match_forced``.

Every result also counts the tokens pushed through the model (real prompt + continuation tokens
of every row, padding excluded, plus generated tokens): ``FitnessResult.tokens`` sums them.

An engine is built once per worker around the live model (``build_engine(options, model,
tokenizer)``) and :meth:`~InferenceEngine.rebind` points it at another module — a data-flow path
model built for the next candidate — without per-candidate set-up. How a generation is cut is the
same for every engine: :func:`finish_generation`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from evomerge.errors import ConfigError

#: a (context ids, continuation ids) pair; the context is never empty
Request = tuple[Sequence[int], Sequence[int]]


@dataclass
class Generation:
    texts: list[str]  # each continuation decoded, cut before the first EOS and the first stop string
    ids: list[list[int]]  # the generated ids up to the stopping token (an EOS id is included)
    tokens: int  # prompt tokens + generated tokens


@dataclass
class Loglik:
    total: float  # Σ_k log p(y_k | x, y_<k) (float32 sum)
    mean: float  # total / length, reduced in float32 like the sum
    length: int  # number of continuation tokens
    greedy: bool  # argmax p(· | x, y_<k) = y_k at every k


@dataclass
class Logliks:
    items: list[Loglik]
    tokens: int


@dataclass
class ForcedMatches:
    matches: list[bool]
    tokens: int


class EngineOptions(BaseModel):
    """Base of every engine's options (the fitness config's ``engine`` section); ``type`` is the
    engine's registry name."""

    model_config = ConfigDict(extra="forbid")
    type: str


@runtime_checkable
class InferenceEngine(Protocol):
    """What a scorer may ask of a model. ``model`` / ``tokenizer`` are what the engine is bound to."""

    model: Any
    tokenizer: Any

    def rebind(self, model: Any, tokenizer: Any = None) -> None:
        """Point the engine at another module (and tokenizer; ``None`` keeps the current one)."""
        ...

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        stop_strings: Sequence[str] = (),
        eos: Collection[int] | None = None,
        batch_size: int = 16,
    ) -> Generation:
        """Greedy continuations; ``eos`` ``None`` = the tokenizer's and the model's EOS ids."""
        ...

    def loglikelihood(self, requests: Sequence[Request], *, batch_size: int = 16) -> Logliks: ...

    def forced_exact_match(self, requests: Sequence[Request], *, batch_size: int = 16) -> ForcedMatches: ...


# --------------------------------------------------------------------------- shared by engines
def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first), to waste little padding."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def check_prompts(prompts: Sequence[Sequence[int]]) -> None:
    if any(len(p) == 0 for p in prompts):
        raise ConfigError("a prompt encodes to zero tokens; give it text or set prepend_bos: true")


def has_stop(text: str, stop: Sequence[str]) -> bool:
    return any(s and s in text for s in stop)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        if s:
            k = text.find(s)
            if k != -1:
                cut = min(cut, k)
    return text[:cut]


def stop_index(tokenizer, ids: Sequence[int], eos: Collection[int], stop: Sequence[str]) -> int:
    """How many of ``ids`` a greedy decoder emits before it stops: through the first token after
    which the decoded text (EOS-free so far) contains a stop string, else through the first EOS id,
    else all of them.

    The stop-string test is monotone in the prefix length (a longer prefix decodes to an extension
    of a shorter one), so that first token is found by bisection: O(log n) decodes, not n.
    """
    first_eos = next((k for k, t in enumerate(ids) if t in eos), None)
    limit = len(ids) if first_eos is None else first_eos  # prefixes ids[:k], k <= limit, hold no EOS
    end = len(ids) if first_eos is None else first_eos + 1
    if not stop or limit == 0 or not has_stop(tokenizer.decode(list(ids[:limit])), stop):
        return end
    lo, hi = 1, limit  # the smallest k with a stop string in decode(ids[:k]) lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if has_stop(tokenizer.decode(list(ids[:mid])), stop):
            hi = mid
        else:
            lo = mid + 1
    return lo


def finish_generation(
    tokenizer, ids: Sequence[int], eos: Collection[int], stop: Sequence[str]
) -> tuple[str, list[int]]:
    """``(text, kept ids)`` for a raw greedy continuation: ids through the stopping token
    (:func:`stop_index`), text decoded without the EOS and cut before the first stop string."""
    kept = list(ids[: stop_index(tokenizer, ids, eos, stop)])
    cut = next((k for k, t in enumerate(kept) if t in eos), len(kept))
    return cut_at_stop(tokenizer.decode(kept[:cut]), stop), kept
