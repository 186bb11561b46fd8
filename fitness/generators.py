"""Named in-code example generators, so a YAML source can say ``{type: generator, name: …}``.

A generator is ``fn(**params) -> list[dict]``; each dict has at least ``id`` and ``prompt``, and
``answer`` (generation, forced exact match, NLL) or ``choices`` + ``label`` (multiple choice).
It must be deterministic for given params (seed them explicitly): the splits are drawn from
its output.

Names starting with ``toyworld.`` live in :mod:`evomerge.toyworld`, imported on first use so
that its generators register themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from evomerge.errors import ConfigError

Generator = Callable[..., list]

_REGISTRY: dict[str, Generator] = {}

# Prefix -> module that registers the generators under it when imported.
_LAZY_MODULES = {"toyworld.": "evomerge.toyworld"}


def register(name: str, fn: Generator | None = None):
    """Register ``fn`` under ``name``; usable as ``register(name, fn)`` or ``@register(name)``."""

    def deco(f: Generator) -> Generator:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not f and _qualname(existing) != _qualname(f):
            raise ValueError(f"generator {name!r} is already registered by {_qualname(existing)}")
        _REGISTRY[name] = f
        return f

    return deco(fn) if fn is not None else deco


def _qualname(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def get(name: str) -> Generator:
    if name not in _REGISTRY:
        for prefix, module in _LAZY_MODULES.items():
            if name.startswith(prefix):
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as exc:
                    if exc.name and module.startswith(exc.name):
                        raise ConfigError(f"generator {name!r}: module {module} is not available") from None
                    raise
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise ConfigError(f"unknown generator {name!r}; known: {known}")
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


def unregister(name: str) -> None:
    """Remove a name (tests register throwaway generators)."""
    _REGISTRY.pop(name, None)
