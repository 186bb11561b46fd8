"""A shared harness for bad-input batteries (``tests/cli/test_bad_inputs*.py``).

A :class:`Case` is one ``evomerge`` invocation that must fail the way a user error fails: the
expected exit status (2 unless told), stderr exactly the expected ``error:`` line (plus any
expected ``warning:`` lines before it), no traceback — and, for destructive inputs, every file
of every protected tree byte-identical afterwards (hashed before and after) and the paths that
must not appear absent. Cases are data::

    Case("merge-force-run-dir", "merge {recipe} -o {run} --force",
         "error: {run}: refusing to replace ... ", protect=["{run}"])

``argv`` is split on whitespace *before* the placeholders are filled, so paths with spaces stay
one argument. Placeholders come from :class:`Env`: ``{tmp}`` (the test's own folder), ``{cfg}``
(a tiny run config over the tiny Llama family, tasks next to it), ``{run}`` (a fresh copy of a
finished two-evaluation run), ``{recipe}`` (a task-arithmetic recipe YAML over the family),
``{base}``, ``{e1}``, ``{e2}`` (the family's models, copied into ``{tmp}`` so that a case may
hand them to a destructive command), ``{log}`` (``{run}/evaluations.jsonl``), ``{home}``,
``{cwd}`` and anything a case's ``setup`` adds with :meth:`Env.add`. A copy is made on first use
only, so a case pays for what it names.

Use::

    from battery import Case, run_case, case_id
    CASES = [Case(...), ...]

    @pytest.mark.parametrize("case", CASES, ids=case_id)
    def test_bad_input(case, env):
        run_case(case, env)

(``env`` is a fixture of ``tests/cli/conftest.py``.)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evomerge.cli import main

Template = str | Callable[["Env"], Any]


@dataclass(frozen=True)
class Case:
    """One bad input. ``expect``: the ``error:`` line (a template, or a compiled regex matched
    against the whole line, its pattern a template too: ``{tmp}`` fills in escaped), or a list of lines when warnings come
    first; ``setup(env)`` prepares files (and may call ``env.add`` or ``env.monkeypatch``);
    ``protect``: trees that must be byte-identical afterwards; ``absent``: paths that must not
    exist afterwards; ``cwd``: the folder to run in (a template); ``code``: the exit status."""

    id: str
    argv: str | Callable[[Env], list]
    expect: Template | re.Pattern | list
    code: int = 2
    setup: Callable[[Env], Any] | None = None
    protect: Iterable[str] = ()
    absent: Iterable[str] = ()
    cwd: str | None = None
    after: Callable[[Env], Any] | None = None  # extra checks once the command returned


def case_id(case: Case) -> str:
    return case.id


class Env:
    """The paths a case names, built lazily under ``tmp`` (see the module docstring)."""

    def __init__(self, tmp: Path, family: dict, finished_run: Path, monkeypatch, capsys):
        self.tmp = Path(tmp)
        self.family = family
        self.finished_run = Path(finished_run)
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self._finalizers: list[Callable[[], Any]] = []
        self._names: dict[str, Any] = {
            "tmp": self.tmp,
            "home": Path.home(),
            "cwd": Path.cwd(),
            "sep": os.sep,
        }
        self._builders: dict[str, Callable[[], Any]] = {
            "cfg": self._cfg,
            "run": self._run,
            "log": lambda: self["run"] / "evaluations.jsonl",
            "recipe": self._recipe,
            "base": lambda: self._model("base", self.family["base"]),
            "e1": lambda: self._model("e1", self.family["experts"][0]),
            "e2": lambda: self._model("e2", self.family["experts"][1]),
        }

    # -- teardown -----------------------------------------------------------------------------
    def on_teardown(self, fn: Callable[[], Any]) -> None:
        self._finalizers.append(fn)

    def close(self) -> None:
        while self._finalizers:
            self._finalizers.pop()()

    # -- names ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            if name not in self._builders:
                raise KeyError(f"battery: unknown placeholder {{{name}}}")
            self._names[name] = self._builders[name]()
        return self._names[name]

    def add(self, name: str, value: Any) -> Any:
        self._names[name] = value
        return value

    def fill(self, template: str, *, escape: bool = False) -> str:
        """``template`` with its placeholders filled (``escape``: each value escaped with ``re.escape``, for a pattern)."""
        return template.format_map(_Lookup(self, escape))

    def path(self, template: str) -> Path:
        return Path(self.fill(template))

    # -- builders ---------------------------------------------------------------------------
    def _cfg(self) -> Path:
        return runs_helpers().tiny_config(self.tmp, {"base": self["base"], "experts": [self["e1"], self["e2"]]})

    def _run(self) -> Path:
        dest = self.tmp / "run"
        shutil.copytree(self.finished_run, dest, symlinks=True)
        return dest

    def _model(self, name: str, src: Path) -> Path:
        dest = self.tmp / "models" / name
        shutil.copytree(src, dest)
        return dest

    def _recipe(self) -> Path:
        path = self.tmp / "recipe.yaml"
        doc = {
            "merge_method": "task_arithmetic",
            "base_model": str(self["base"]),
            "models": [
                {"model": str(self["e1"]), "parameters": {"weight": 0.5}},
                {"model": str(self["e2"]), "parameters": {"weight": 0.3}},
            ],
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path


def runs_helpers():
    """``tests/runs/runs_helpers.py`` (the tests are not a package: loaded by path, once)."""
    global _RUNS_HELPERS
    if _RUNS_HELPERS is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "runs_helpers_battery", Path(__file__).resolve().parents[1] / "runs" / "runs_helpers.py"
        )
        _RUNS_HELPERS = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_RUNS_HELPERS)
    return _RUNS_HELPERS


_RUNS_HELPERS = None


class _Lookup(dict):
    def __init__(self, env: Env, escape: bool = False):
        super().__init__()
        self.env = env
        self.escape = escape

    def __missing__(self, key: str) -> str:
        value = str(self.env[key])
        return re.escape(value) if self.escape else value


# -- what "byte-identical" means ------------------------------------------------------------
def snapshot(root: Path) -> dict[str, Any]:
    """Every entry under ``root`` (``root`` itself included), without following links: a file's
    sha256 and mode, a link's target, a folder's mode. Absent: ``{}``."""
    out: dict[str, Any] = {}
    if not os.path.lexists(root):
        return out

    def entry(p: Path) -> Any:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            return ("link", os.readlink(p))
        if stat.S_ISDIR(st.st_mode):
            return ("dir", stat.S_IMODE(st.st_mode))
        if stat.S_ISREG(st.st_mode):
            return ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
        return ("other", st.st_mode)

    out["."] = entry(root)
    if out["."][0] == "dir":
        for folder, dirs, files in os.walk(root):
            for name in sorted(dirs + files):
                p = Path(folder) / name
                out[str(p.relative_to(root))] = entry(p)
    return out


def cli(env: Env, argv: list) -> tuple[int, str]:
    """(exit status, stderr) of ``evomerge ARGV`` in-process."""
    env.capsys.readouterr()  # drop what building the fixtures printed
    code = main([str(a) for a in argv])
    return code, env.capsys.readouterr().err


def argv_of(case: Case, env: Env) -> list:
    if callable(case.argv):
        return list(case.argv(env))
    return [env.fill(token) for token in case.argv.split()]


def _expected_lines(case: Case, env: Env) -> list:
    expect = case.expect(env) if callable(case.expect) and not isinstance(case.expect, re.Pattern) else case.expect
    lines = expect if isinstance(expect, list) else [expect]
    out = []
    for line in lines:
        if isinstance(line, re.Pattern):
            out.append(re.compile(env.fill(line.pattern, escape=True)))
        else:
            out.append(env.fill(str(line)))
    return out


@dataclass
class Outcome:
    code: int
    err: str
    lines: list[str] = field(default_factory=list)


def run_case(case: Case, env: Env) -> Outcome:
    """Run ``case`` and assert everything it promises (see :class:`Case`)."""
    if case.setup is not None:
        case.setup(env)
    argv = argv_of(case, env)  # placeholders are built (copied) before the snapshot
    protected = {env.fill(p): snapshot(env.path(p)) for p in case.protect}
    for name, snap in protected.items():
        assert snap, f"battery: protected path {name} does not exist before the command"
    if case.cwd is not None:
        env.monkeypatch.chdir(env.path(case.cwd))
    code, err = cli(env, argv)
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    expected = _expected_lines(case, env)
    assert code == case.code, (code, err)
    assert len(lines) == len(expected), f"stderr: {lines}\nwant: {expected}"
    for got, want in zip(lines, expected):
        if isinstance(want, re.Pattern):
            assert want.fullmatch(got), (got, want.pattern)
        else:
            assert got == want, f"\n got: {got}\nwant: {want}"
    for name, before in protected.items():
        assert snapshot(Path(name)) == before, f"{name} changed"
    for p in case.absent:
        assert not os.path.lexists(env.path(p)), f"{env.fill(p)} exists"
    if case.after is not None:
        case.after(env)
    return Outcome(code, err, lines)


# -- operating-system failures --------------------------------------------------------------
def _mount(args: list[str]) -> bool:
    import subprocess

    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def broken_folder(env: Env, name: str, err: int, *, populate: Callable[[Path], Any] | None = None) -> Path:
    """``{tmp}/<name>``, a folder where creating or writing anything fails with ``err``:

    * ``EROFS``: a real read-only tmpfs (root), ``ENOSPC``: a real 8 KiB tmpfs (root);
    * ``EACCES``: a real ``chmod 555`` folder (not root: root ignores modes);
    * otherwise — no ``mount`` permission, or ``EACCES`` as root — the same errno injected
      in-process into ``os.mkdir`` / ``os.open`` / ``open`` / ``os.write`` for paths in it.

    ``populate(folder)`` fills it first (a read-only folder holding a run, say). The folder is
    unmounted / made writable again at teardown.
    """
    import errno

    folder = env.tmp / name
    folder.mkdir()
    env.add(name, folder)
    size = "size=8k" if err == errno.ENOSPC else "size=16m"
    if err in (errno.EROFS, errno.ENOSPC) and _mount(["-t", "tmpfs", "-o", size, "tmpfs", str(folder)]):
        env.on_teardown(lambda: _umount(folder))
        if populate is not None:
            populate(folder)
        if err == errno.ENOSPC or _mount(["-o", "remount,ro", str(folder)]):
            return folder
    elif populate is not None:
        populate(folder)
    if err == errno.EACCES and os.geteuid() != 0:
        for sub, dirs, _ in os.walk(folder):
            for d in [sub, *(os.path.join(sub, x) for x in dirs)]:
                os.chmod(d, 0o555)
        env.on_teardown(lambda: [os.chmod(d, 0o755) for d, _, _ in os.walk(folder)])
        return folder
    inject(env, folder, err)
    return folder


def inject(env: Env, folder: Path, err: int) -> None:
    """Make every creation or write of a path inside ``folder`` fail with ``err`` (in-process)."""
    import builtins
    import io

    root = os.path.realpath(folder)

    def under(path) -> bool:
        try:
            p = os.path.realpath(os.path.join(os.getcwd(), os.fspath(path)))
        except TypeError:
            return False
        return p == root or p.startswith(root + os.sep)

    def fail(path):
        raise OSError(err, os.strerror(err), os.fspath(path))

    real_mkdir, real_open, real_write, real_bopen = os.mkdir, os.open, os.write, builtins.open

    def mkdir(path, *a, **k):
        if under(path) and not os.path.isdir(path):
            fail(path)
        return real_mkdir(path, *a, **k)

    def os_open(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
            fail(path)
        return real_open(path, flags, *a, **k)

    def b_open(file, mode="r", *a, **k):
        if not isinstance(file, int) and any(c in mode for c in "wax+") and under(file):
            fail(file)
        return real_bopen(file, mode, *a, **k)

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target and under(target):
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    env.monkeypatch.setattr(os, "mkdir", mkdir)
    env.monkeypatch.setattr(os, "open", os_open)
    env.monkeypatch.setattr(os, "write", write)
    env.monkeypatch.setattr(builtins, "open", b_open)
    env.monkeypatch.setattr(io, "open", b_open)


# -- small builders cases share -------------------------------------------------------------
def edit_yaml(path: Path, fn: Callable[[Any], Any]) -> Path:
    data = yaml.safe_load(Path(path).read_text())
    fn(data)
    Path(path).write_text(yaml.safe_dump(data))
    return Path(path)


def edit_log(env: Env, fn: Callable[[list[dict]], Any]) -> Path:
    """Rewrite ``{run}``'s log after ``fn(records)`` changed the parsed records in place."""
    import json

    log = env["log"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    fn(records)
    log.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return log


__all__ = [
    "Case",
    "Env",
    "Outcome",
    "argv_of",
    "broken_folder",
    "case_id",
    "cli",
    "edit_log",
    "edit_yaml",
    "inject",
    "run_case",
    "runs_helpers",
    "snapshot",
]
