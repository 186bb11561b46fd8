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
        (
            "nomodule_xyz:f",
            "scorer.fn: cannot import module 'nomodule_xyz' (No module named 'nomodule_xyz'; "
            "no nomodule_xyz.py or nomodule_xyz/ in {cwd} either)",
        ),
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
    assert str(info.value) == message.format(cwd=os.getcwd())


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


def test_a_users_module_next_to_the_config_or_in_the_current_directory(tmp_path, monkeypatch):
    """The console script does not put the current directory on sys.path: a reference to a module
    there, or next to the config (``search``), is found anyway — only that module is loaded."""
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    (cfg_dir / "evm_scorer_a.py").write_text("def score(x):\n    return x + 1\n")
    work = tmp_path / "work"
    (work / "evm_pkg_b").mkdir(parents=True)
    (work / "evm_pkg_b" / "__init__.py").write_text("")
    (work / "evm_pkg_b" / "sub.py").write_text("def twice(x):\n    return 2 * x\n")
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(work))])
    path_before = list(sys.path)
    try:
        assert resolve_callable("evm_scorer_a:score", what="scorer.fn", search=[cfg_dir])(1) == 2
        assert resolve_callable("evm_pkg_b.sub:twice", what="scorer.fn")(4) == 8  # a package in the cwd
        assert sys.path == path_before  # no folder was added for everything else
        with pytest.raises(ConfigError) as info:  # the config's folder is not searched unless named
            resolve_callable("evm_scorer_c:score", what="scorer.fn")
        assert str(info.value) == (
            "scorer.fn: cannot import module 'evm_scorer_c' (No module named 'evm_scorer_c'; "
            f"no evm_scorer_c.py or evm_scorer_c/ in {work} either)"
        )
        (cfg_dir / "evm_scorer_d.py").write_text("import evm_missing_dependency\n")
        with pytest.raises(ConfigError) as info:  # the module is found; what it imports is missing
            resolve_callable("evm_scorer_d:score", what="scorer.fn", search=[cfg_dir])
        assert str(info.value) == (
            f"scorer.fn: importing {cfg_dir / 'evm_scorer_d.py'} failed "
            "(ModuleNotFoundError: No module named 'evm_missing_dependency')"
        )
        assert "evm_scorer_d" not in sys.modules
        (work / "evm_reg_e.py").write_text("class X:\n    pass\n")
        reg = Registry("driver")
        reg.register("x", "evm_reg_e:X")
        with pytest.raises(ConfigError) as info:  # a registry's own references never look in folders
            reg.get("x")
        assert str(info.value) == "driver 'x': cannot import module 'evm_reg_e' (No module named 'evm_reg_e')"
    finally:
        for name in ("evm_scorer_a", "evm_pkg_b", "evm_pkg_b.sub"):
            sys.modules.pop(name, None)


def test_a_module_inside_a_run_directory_never_runs(tmp_path, monkeypatch):
    """A run directory is data: a module dropped into one is not imported, whether the run's
    config.yaml points there (``_base_dir``) or the user resumes from inside it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x: 1\n")
    (run / "evaluations.jsonl").write_text("")
    marker = tmp_path / "ran"
    (run / "evm_planted.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\ndef f(*a):\n    return 1\n")
    monkeypatch.chdir(run / "checkpoints")
    with pytest.raises(ConfigError) as info:
        resolve_callable("evm_planted:f", what="scorer.fn", search=[run])
    assert str(info.value) == (
        "scorer.fn: cannot import module 'evm_planted' (No module named 'evm_planted'; a run directory is never searched)"
    )
    assert not marker.exists() and "evm_planted" not in sys.modules
