"""evomerge.registry: references to callables and the generic plug-in registry."""

from __future__ import annotations

import os.path
import sys

import pytest

from evomerge.errors import ConfigError
from evomerge.registry import Registry, import_object, resolve_callable


def test_resolve_callable_forms():
    assert resolve_callable(len) is len
    assert resolve_callable("os.path:join") is os.path.join
    assert resolve_callable("os.path.join") is os.path.join
    assert resolve_callable("evomerge.registry:Registry.register") is Registry.register  # a qualified name
    assert import_object("os:sep") == os.sep


@pytest.mark.parametrize(
    "ref, message",
    [
        ("nomodule_xyz:f", "scorer.fn: cannot import module 'nomodule_xyz' (No module named 'nomodule_xyz')"),
        ("os.path:nope", "scorer.fn: module 'os.path' has no attribute 'nope'"),
        ("os.path:join.nope", "scorer.fn: module 'os.path' has no attribute 'join.nope'"),
        ("os:sep", "scorer.fn: 'os:sep' is not callable"),
        ("justaname", "scorer.fn: expected \"pkg.module:function\", got 'justaname'"),
        (":f", "scorer.fn: expected \"pkg.module:function\", got ':f'"),
        (3, 'scorer.fn: expected "pkg.module:function", got 3'),
    ],
)
def test_resolve_callable_errors_are_one_line(ref, message):
    with pytest.raises(ConfigError) as info:
        resolve_callable(ref, what="scorer.fn")
    assert str(info.value) == message


def test_registry_lazy_and_direct():
    reg = Registry("widget")
    reg.register("join", "os.path:join")
    reg.register("length", len)
    assert reg.names() == ["join", "length"] and list(reg) == ["join", "length"] and len(reg) == 2
    assert "join" in reg and "nope" not in reg
    assert reg.get("length") is len
    assert reg.get("join") is os.path.join
    reg.register("length", len)  # the same target again is fine
    with pytest.raises(ValueError, match="widget 'length' is already registered"):
        reg.register("length", max)


def test_registry_imports_lazily():
    reg = Registry("thing")
    reg.register("decimal", "decimal:Decimal")
    sys.modules.pop("decimal", None)
    assert "decimal" not in sys.modules
    assert reg.get("decimal").__name__ == "Decimal"
    assert "decimal" in sys.modules


def test_registry_unknown_names():
    reg = Registry("driver")
    for name in ("cmaes", "m2n2", "random"):
        reg.register(name, "os.path:join")
    with pytest.raises(ConfigError) as info:
        reg.get("cmaz")
    assert str(info.value) == "unknown driver 'cmaz' (did you mean 'cmaes'?)"
    with pytest.raises(ConfigError) as info:
        reg.get("pso")
    assert str(info.value) == "unknown driver 'pso' (known: cmaes, m2n2, random)"
    reg.register("broken", "nomodule_xyz:Driver")
    with pytest.raises(ConfigError) as info:
        reg.get("broken")
    assert str(info.value) == "driver 'broken': cannot import module 'nomodule_xyz' (No module named 'nomodule_xyz')"
