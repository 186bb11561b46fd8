"""Plug-ins by name: :func:`import_object` / :func:`resolve_callable` for ``"module:name"``
references, and :class:`Registry`.

A reference is ``"package.module:qualified.name"`` (or ``"package.module.name"``); anything a
user can get wrong about one — no such module, no such attribute, not callable — is one line of
:class:`~evomerge.errors.ConfigError` naming the reference. A module that is not on ``sys.path``
is also found next to the config file and in the current directory (see :func:`import_object`). A registry maps a plug-in kind's
names (``"cmaes"``) to classes or callables, given directly or as lazy ``"module:Name"`` strings
imported on first use, so that importing a registry stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from evomerge.errors import ConfigError, did_you_mean
from evomerge.io.outputs import in_run_dir


def import_object(
    ref: str, *, what: str = "reference", search: Iterable[str | os.PathLike | None] | None = None
) -> Any:
    """The object named by ``"pkg.module:qualified.name"`` or ``"pkg.module.name"``.

    ``what`` names the setting in errors (``"scorer.fn: cannot import module 'pkg' (…)"``).
    With ``search`` (a user's reference: :func:`resolve_callable`), a top-level module that is
    not importable from ``sys.path`` is looked for, as ``NAME.py`` or a package folder ``NAME/``,
    in each folder of ``search`` (the config file's folder) and then in the current directory:
    the ``evomerge`` console script does not put the current directory on ``sys.path``, and
    neither does this — only the named module is loaded from there. A folder that is (or lies
    inside) a run directory is never searched: a run directory is data. Without ``search`` (the
    registries' own references) nothing but ``sys.path`` is looked at.
    """
    if not isinstance(ref, str):
        raise ConfigError(f'{what}: expected "pkg.module:function", got {ref!r}')
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
    else:
        module_name, _, attr = ref.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f'{what}: expected "pkg.module:function", got {ref!r}')
    obj: Any = _import_module(module_name, what=what, search=search)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _import_module(module_name: str, *, what: str, search: Iterable[str | os.PathLike | None] | None) -> Any:
    top = module_name.partition(".")[0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if search is None or exc.name != top:  # not a user's reference, or something the module imports is missing
            raise ConfigError(f"{what}: cannot import module {module_name!r} ({exc})") from None
        # a run directory is data: a module dropped into one (or a config.yaml pointing there) never runs
        folders = [f for f in [*(Path(f) for f in search if f is not None), Path.cwd()] if not in_run_dir(f)]
        if not _load_top_level(top, folders, what=what):
            looked = " or ".join(dict.fromkeys(str(f.resolve()) for f in folders))
            where = f"no {top}.py or {top}/ in {looked} either" if looked else "a run directory is never searched"
            raise ConfigError(f"{what}: cannot import module {module_name!r} ({exc}; {where})") from None
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import module {module_name!r} ({exc})") from None
    try:
        return importlib.import_module(module_name)  # a submodule of a package just loaded from a folder
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import module {module_name!r} ({exc})") from None


def _load_top_level(name: str, folders: list[Path], *, what: str) -> bool:
    """Load the top-level module ``name`` from the first folder that holds it (into
    ``sys.modules``, as an import would). False when none does."""
    for folder in folders:
        package = folder / name / "__init__.py"
        single = folder / f"{name}.py"
        if package.is_file():
            spec = importlib.util.spec_from_file_location(
                name, package, submodule_search_locations=[str(package.parent)]
            )
        elif single.is_file():
            spec = importlib.util.spec_from_file_location(name, single)
        else:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(name, None)
            if isinstance(exc, Exception):
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                where = package if package.is_file() else single
                raise ConfigError(f"{what}: importing {where} failed ({type(exc).__name__}: {first})") from None
            raise
        return True
    return False


def resolve_callable(
    ref: Callable | str, *, what: str = "callable", search: Iterable[str | os.PathLike | None] = ()
) -> Callable:
    """``ref`` itself when callable, else the callable :func:`import_object` finds for it
    (``search``: folders a module not on ``sys.path`` is looked for in, before the current directory)."""
    if callable(ref):
        return ref
    obj = import_object(ref, what=what, search=search)
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
