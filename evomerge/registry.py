"""Plug-ins by name: :func:`import_object` / :func:`resolve_callable` for ``"module:name"``
references, and :class:`Registry`.

A reference is ``"package.module:qualified.name"`` (or ``"package.module.name"``); anything a
user can get wrong about one — no such module, no such attribute, not callable — is one line of
:class:`~evomerge.errors.ConfigError` naming the reference. A registry maps a plug-in kind's
names (``"cmaes"``) to classes or callables, given directly or as lazy ``"module:Name"`` strings
imported on first use, so that importing a registry stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from evomerge.errors import ConfigError, did_you_mean


def import_object(ref: str, *, what: str = "reference") -> Any:
    """The object named by ``"pkg.module:qualified.name"`` or ``"pkg.module.name"``.

    ``what`` names the setting in errors (``"scorer.fn: cannot import module 'pkg' (…)"``).
    """
    if not isinstance(ref, str):
        raise ConfigError(f'{what}: expected "pkg.module:function", got {ref!r}')
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
    else:
        module_name, _, attr = ref.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f'{what}: expected "pkg.module:function", got {ref!r}')
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def resolve_callable(ref: Callable | str, *, what: str = "callable") -> Callable:
    """``ref`` itself when callable, else the callable :func:`import_object` finds for it."""
    if callable(ref):
        return ref
    obj = import_object(ref, what=what)
    if not callable(obj):
        raise ConfigError(f"{what}: {ref!r} is not callable")
    return obj


class Registry:
    """Names of one plug-in kind (``Registry("driver")``), in registration order.

    ``register(name, target)`` takes a class / callable or a lazy ``"module:Name"`` string;
    ``get(name)`` returns the target, importing a lazy one once; an unknown name raises
    ``ConfigError("unknown driver 'x' (did you mean 'y'?)")``.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._targets: dict[str, Any] = {}

    def register(self, name: str, target: Any) -> Any:
        """Add ``name``; registering a second, different target under a name is a bug (ValueError)."""
        existing = self._targets.get(name)
        if existing is not None and existing is not target and existing != target:
            raise ValueError(f"{self.kind} {name!r} is already registered ({existing!r})")
        self._targets[name] = target
        return target

    def names(self) -> list[str]:
        return list(self._targets)

    def get(self, name: str) -> Any:
        if name not in self._targets:
            raise ConfigError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._targets)}")
        target = self._targets[name]
        if isinstance(target, str):
            target = self._targets[name] = import_object(target, what=f"{self.kind} {name!r}")
        return target

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._targets)
