"""Inference engines: what scorers call instead of ``model(...)``.

``ENGINES`` maps an engine's ``type`` to its class; each class carries its options model
(``Engine.Options``, ``type: Literal["name"]``) and :data:`EngineConfig` — the fitness config's
``engine`` section — is the union of those models. :func:`build_engine` makes one around a model.

A new engine (say ``vllm``) is: its module here (options + a class implementing
:class:`~evomerge.fitness.engines.base.InferenceEngine`), one ``ENGINES.register`` line below, its
parity tests in ``tests/fitness/``, and a section in ``docs/fitness.md``. Nothing in the scorers
changes.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from evomerge.errors import did_you_mean
from evomerge.fitness.engines.base import (
    EngineOptions,
    ForcedMatches,
    Generation,
    InferenceEngine,
    Loglik,
    Logliks,
    Request,
)
from evomerge.fitness.engines.hf import HFEngine, HFOptions
from evomerge.registry import Registry

ENGINES = Registry("inference engine")
ENGINES.register("hf", HFEngine)

DEFAULT_ENGINE = "hf"


def _engine_config():
    members = tuple(ENGINES.get(n).Options for n in ENGINES)
    if len(members) == 1:  # a one-member "union" would put the tag into error locations
        return members[0]
    return Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007


#: The ``engine`` section of a fitness config: one of the registered engines' options, chosen by
#: ``type`` (default ``hf``); :func:`engine_section` runs first.
EngineConfig = _engine_config()


def engine_section(data: Any) -> Any:
    """An ``engine`` mapping with its ``type`` defaulted to ``hf`` and checked against the registry
    (a pydantic before-validator: an unknown type is a ValueError with a did-you-mean hint)."""
    if not isinstance(data, dict):
        return data
    data = {"type": DEFAULT_ENGINE, **data}
    if data["type"] not in ENGINES:
        raise ValueError(f"unknown inference engine {data['type']!r}{did_you_mean(str(data['type']), ENGINES)}")
    return data


def build_engine(options: EngineOptions | None, model: Any, tokenizer: Any) -> InferenceEngine:
    """The engine ``options`` names (default: the HF engine with its defaults), bound to ``model``."""
    options = options or HFOptions()
    return ENGINES.get(options.type)(model, tokenizer, options)


def is_engine(obj: Any) -> bool:
    return isinstance(obj, InferenceEngine)


__all__ = [
    "ENGINES",
    "EngineConfig",
    "EngineOptions",
    "ForcedMatches",
    "Generation",
    "HFEngine",
    "HFOptions",
    "InferenceEngine",
    "Loglik",
    "Logliks",
    "Request",
    "build_engine",
    "engine_section",
    "is_engine",
]
