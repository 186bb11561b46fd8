"""The package's import graph, read from the source with ``ast``: the merge engine and the model pool
form an acyclic graph and import nothing above them.

Every import counts, at module level or inside a function (an import inside a function is still a
dependency; it only hides a cycle until that function runs), except those under
``if TYPE_CHECKING:`` (never executed). ``from pkg import name`` is an edge to ``pkg.name`` when that
is a module, else to ``pkg``. Dynamic imports (``importlib.import_module``) are not seen.

The whole package: ``.venv/bin/python tests/package/test_import_graph.py`` prints every cycle
among evomerge's modules (exit status 1 if there is one).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# import name -> folder (the top-level fitness/ folder is installed as evomerge.fitness)
PACKAGES = {"evomerge": ROOT / "evomerge", "evomerge.fitness": ROOT / "fitness"}
ENGINE = ("evomerge.merge", "evomerge.pool")
ABOVE_ENGINE = tuple(
    f"evomerge.{p}"
    for p in ("space", "drivers", "scheduler", "evaluator", "runs", "fitness", "export", "report", "cli", "config")
)


def module_files() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        # an `if TYPE_CHECKING:` body never runs; its else branch does
        for c in child.orelse if isinstance(child, ast.If) and _is_type_checking(child.test) else [child]:
            if isinstance(c, (ast.Import, ast.ImportFrom)):
                yield c
            else:
                yield from _import_nodes(c)


def imports_of(source: str, module: str, known: set[str], is_package: bool = False) -> set[str]:
    """The modules of ``known`` that ``source`` (the text of ``module``) imports."""

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str] = set()
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [owner(alias.name) for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else owner(base) for a in node.names]
        found.update(t for t in targets if t is not None and t != module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {
        m: imports_of(p.read_text(encoding="utf-8"), m, known, is_package=p.name == "__init__.py")
        for m, p in files.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), each as
    ``[a, b, …, a]`` along real edges."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(comp), comp[0]) for comp in components]


def _cycle_in(graph: dict[str, set[str]], comp: set[str], start: str) -> list[str]:
    """A shortest cycle through ``start`` inside one strongly connected component (BFS)."""
    parents = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def restricted(graph: dict[str, set[str]], packages: tuple[str, ...]) -> dict[str, set[str]]:
    """The subgraph of the modules in ``packages``."""
    inside = {m for m in graph if under(m, packages)}
    return {m: graph[m] & inside for m in inside}


# --------------------------------------------------------------------------- the checker itself


def test_parser_counts_function_level_imports_and_skips_type_checking():
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "import pkg.a\n"
        "from pkg import b\n"
        "if TYPE_CHECKING:\n    from pkg import c\n"
        "def f():\n    from pkg.d import thing\n"
        "from . import e\n"
    )
    assert imports_of(source, "pkg.x", known) == {"pkg.a", "pkg.b", "pkg.d", "pkg.e"}
    assert imports_of("from pkg import name_in_init\n", "pkg.x", known) == {"pkg"}


def test_cycle_finder_finds_a_cycle_and_only_real_ones():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert find_cycles(restricted({"p.x": {"p.y", "q.z"}, "p.y": {"p.x"}, "q.z": {"p.x"}}, ("q",))) == []


# --------------------------------------------------------------------------- the package


def test_merge_engine_and_pool_have_no_import_cycle():
    graph = import_graph()
    assert "evomerge.merge.recipes.parameter" in graph and "evomerge.pool.pool" in graph
    assert find_cycles(restricted(graph, ENGINE)) == []


def test_package_has_no_import_cycle():
    """No cycle anywhere in evomerge (evomerge.fitness included), function-level imports counted:
    an import moved into a function to dodge a cycle at import time still shows up here."""
    graph = import_graph()
    assert "evomerge.fitness.lmeval" in graph and "evomerge.fitness.loading" in graph
    assert "evomerge.fitness.task" in graph["evomerge.fitness.lmeval"]  # the import lm-eval loading needs
    assert find_cycles(graph) == []


def edges(graph: dict[str, set[str]], sources: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, ts in graph.items() if under(m, sources) for t in ts if under(t, targets))


def test_merge_engine_and_pool_import_nothing_above_them():
    assert edges(import_graph(), ENGINE, ABOVE_ENGINE) == []


def test_pool_does_not_import_the_engine():
    assert edges(import_graph(), ("evomerge.pool",), ("evomerge.merge",)) == []


if __name__ == "__main__":
    cycles = find_cycles(import_graph())
    for cycle in cycles:
        print(" -> ".join(cycle))
    print(f"{len(cycles)} import cycle(s) among evomerge's modules")
    sys.exit(1 if cycles else 0)
