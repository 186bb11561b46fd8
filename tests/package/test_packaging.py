"""The installed package layout: fitness/ ships as evomerge.fitness, and nothing imports a bare
``fitness`` (which would load a second copy of every module next to ``evomerge.fitness``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> tuple[list[str], dict[str, str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    st = data["tool"]["setuptools"]
    return list(st["packages"]), dict(st.get("package-dir", {}))


def _folder(pkg: str, mapping: dict[str, str]) -> Path:
    for prefix, folder in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        if pkg == prefix or pkg.startswith(prefix + "."):
            rest = pkg[len(prefix) :].lstrip(".")
            return ROOT / folder / Path(*rest.split(".")) if rest else ROOT / folder
    return ROOT / Path(*pkg.split("."))


def test_every_package_folder_is_declared():
    packages, mapping = _declared()
    for pkg in packages:
        assert (_folder(pkg, mapping) / "__init__.py").is_file(), f"{pkg} is declared but has no folder"
    found = set()
    for top, name in (("evomerge", "evomerge"), ("fitness", "evomerge.fitness")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    missing = sorted(found - set(packages))
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}"


def test_fitness_is_a_subpackage():
    import evomerge.fitness as fitness

    assert Path(fitness.__file__).resolve() == (ROOT / "fitness" / "__init__.py").resolve()


def test_no_bare_fitness_imports():
    pattern = re.compile(r"^\s*(from\s+fitness[\s.]|import\s+fitness\b)", re.M)
    offenders = []
    for top in ("evomerge", "fitness", "tests", "benchmarks", "experiments"):
        for path in (ROOT / top).rglob("*.py"):
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"import evomerge.fitness, not fitness: {offenders}"
