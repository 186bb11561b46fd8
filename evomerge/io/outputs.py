"""What a command may write over: the one set of rules behind every ``--force``.

Every directory evomerge writes as a whole (a merged checkpoint, a folded data-flow checkpoint,
a toy world, a report) carries a marker file, :data:`MARKER` (``.evomerge-output.json``: the
kind of output, the writer, the evomerge version). :func:`check_replaceable` is called before a
command does any work and decides whether ``path`` may be written:

* never ``/``, the home directory, the current directory, or an ancestor of either — with or
  without ``--force`` (replacing one would move the user's working tree away);
* an absent path, or an empty directory, is always fine; anything else needs ``force``;
* ``force`` never replaces a **run directory** (see :func:`is_run_dir`), anything inside one,
  or a folder that holds one — except the run's own derived outputs, which pass ``own_run``;
* ``force`` never replaces a **source model** (``protected``: the models a recipe or config
  names) or an ancestor of one;
* ``force`` replaces only what is recognisably an earlier output of the same kind: a directory
  whose marker names ``kind`` (or which ``recognise`` accepts: outputs written before markers
  existed), or, for one file, a file ``recognise`` accepts as the format being written (e.g. a
  recipe YAML: :func:`is_recipe_yaml`).

Each refusal is one line naming the path and the rule. Paths are compared both as given
(made absolute) and with symbolic links resolved, so a link cannot smuggle a protected folder
past a rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from evomerge.errors import EvomergeError
from evomerge.io.atomic import atomic_dir

#: The marker every whole-directory writer leaves in its output.
MARKER = ".evomerge-output.json"
MARKER_FORMAT = 1

#: Files that make a folder a run directory (:class:`evomerge.runs.store.RunStore`'s layout).
RUN_LOG = "evaluations.jsonl"
RUN_CONFIG = "config.yaml"
RUN_COMPANIONS = ("meta.json", "lock", "checkpoints", "progress.json")

#: Files larger than this are never taken for a recipe YAML (and are not read to find out).
_RECIPE_MAX_BYTES = 4 * 1024 * 1024
#: How deep :func:`check_replaceable` looks for a run directory inside a folder it may replace.
_SCAN_ENTRIES = 200_000


class OutputRefused(EvomergeError):
    """``path`` may not be written (the message names the rule)."""


# -- markers -----------------------------------------------------------------------------------
def marker_payload(kind: str, writer: str) -> dict[str, Any]:
    from evomerge import __version__

    return {"format": MARKER_FORMAT, "kind": kind, "writer": writer, "version": __version__}


def write_marker(directory: str | os.PathLike, kind: str, writer: str) -> None:
    """Write the marker into ``directory`` (a temporary output being filled: fsynced with it)."""
    Path(directory, MARKER).write_text(json.dumps(marker_payload(kind, writer), sort_keys=True) + "\n")


def read_marker(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of ``directory`` (a mapping with ``kind``), or None when there is none or it is
    not one of ours (a link, a folder, not JSON)."""
    path = os.path.join(os.fspath(directory), MARKER)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("kind"), str):
        return None
    return payload


@contextlib.contextmanager
def output_dir(out_dir: str | os.PathLike, *, kind: str, writer: str, what: str) -> Iterator[Path]:
    """:func:`evomerge.io.atomic_dir` that leaves the marker: ``with output_dir(out, kind=…,
    writer="evomerge merge", what="the merged checkpoint") as tmp:`` fill ``tmp``."""
    with atomic_dir(out_dir, what=what) as tmp:
        yield tmp
        write_marker(tmp, kind, writer)


# -- recognisers -------------------------------------------------------------------------------
def is_run_dir(path: str | os.PathLike) -> bool:
    """A folder holding ``evaluations.jsonl``, or ``config.yaml`` with one of ``meta.json``,
    ``lock``, ``checkpoints`` or ``progress.json`` (a run's first files). Links are not followed."""
    p = os.fspath(path)
    if not _is_real_dir(p):
        return False
    if os.path.lexists(os.path.join(p, RUN_LOG)):
        return True
    return os.path.lexists(os.path.join(p, RUN_CONFIG)) and any(
        os.path.lexists(os.path.join(p, name)) for name in RUN_COMPANIONS
    )


def in_run_dir(path: str | os.PathLike) -> Path | None:
    """The run directory ``path`` is or lies inside (links resolved), or None."""
    real = Path(os.path.realpath(os.fspath(path)))
    return next((p for p in [real, *real.parents] if is_run_dir(p)), None)


def is_recipe_yaml(path: str | os.PathLike) -> bool:
    """A regular file of at most a few MiB holding a YAML mapping that is a merge recipe: ours or
    mergekit's (``merge_method`` or ``slices``) or a data-flow one (``path`` and ``sources``)."""
    import yaml

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _RECIPE_MAX_BYTES:
            return False
        with open(path, "rb") as f:
            data = yaml.safe_load(f.read())
    except (OSError, ValueError, yaml.YAMLError):
        return False
    if not isinstance(data, dict):
        return False
    return "merge_method" in data or "slices" in data or ("path" in data and "sources" in data)


def is_legacy_checkpoint(path: str | os.PathLike) -> bool:
    """A checkpoint directory evomerge wrote before markers: ``config.json`` and a model card
    whose front matter carries the ``evomerge`` tag (``merge``, ``export --format hf``)."""
    p = Path(path)
    if not (p / "config.json").is_file():
        return False
    try:
        with open(p / "README.md", "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    if not head.startswith("---\n"):
        return False
    front = head[4:].split("\n---", 1)[0]
    return "- evomerge" in front.splitlines() or "evomerge" in front.partition("tags:")[2].split("\n", 1)[0]


# -- the rules ---------------------------------------------------------------------------------
def _is_real_dir(p: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def _forms(path: str | os.PathLike) -> list[Path]:
    """``path`` made absolute as written, and with links resolved (one of each, in that order)."""
    given = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    real = Path(os.path.realpath(given))
    return [given] if real == given else [given, real]


def _contains(parent: Path, child: Path) -> bool:
    return parent == child or parent in child.parents


def _special_dirs() -> list[tuple[Path, str]]:
    out = [(Path("/"), "the root directory")]
    with contextlib.suppress(RuntimeError, KeyError):
        home = Path.home()
        out += [(Path(p), "your home directory") for p in _forms(home)]
    with contextlib.suppress(OSError):
        out += [(Path(p), "the current directory") for p in _forms(os.getcwd())]
    return out


def check_not_special(path: str | os.PathLike) -> None:
    """Refuse ``/``, the home directory, the current directory and their ancestors."""
    for form in _forms(path):
        for special, name in _special_dirs():
            if form == special:
                raise OutputRefused(f"{path}: is {name}; evomerge never writes over it: choose a new or empty folder")
            if _contains(form, special):
                raise OutputRefused(
                    f"{path}: holds {name} ({special}); evomerge never writes over it: choose a new or empty folder"
                )


def _run_dir_around(form: Path, own_run: Path | None) -> str | None:
    """The rule ``form`` breaks with respect to run directories, as a message tail, or None."""
    if own_run is not None and any(_contains(r, form) and r != form for r in _forms(own_run)):
        return None  # the run's own derived output (its report/): the run writes it
    for anc in [form, *form.parents]:
        if is_run_dir(anc):
            where = "is the run directory" if anc == form else f"is inside the run directory {anc}"
            return f"{where}; --force never replaces a run directory, anything in one, or a folder that holds one"
    return None


def _run_dir_below(form: Path, limit: int = _SCAN_ENTRIES) -> Path | None:
    """A run directory somewhere below ``form`` (links not followed), or None."""
    seen = 0
    for folder, dirs, _files in os.walk(form):
        for name in dirs:
            sub = Path(folder) / name
            if is_run_dir(sub):
                return sub
        seen += len(dirs) + len(_files)
        if seen > limit:
            return None
    return None


def check_replaceable(
    path: str | os.PathLike,
    *,
    kind: str,
    force: bool,
    protected: Iterable[str | os.PathLike] = (),
    recognise: Callable[[Path], bool] | None = None,
    own_run: str | os.PathLike | None = None,
) -> None:
    """Raise :class:`OutputRefused` unless ``path`` may be written (the rules: module docstring).

    ``kind``: the marker kind of a directory output (``"hf-checkpoint"``, ``"report"``, …) or
    ``"file"`` for a single file; ``protected``: source models (paths; hub ids that are not
    local are skipped); ``recognise(path)``: accepts an earlier output written without a marker
    (for a file: the format being written); ``own_run``: a run directory whose derived outputs
    the caller writes (they may be replaced although they lie inside a run directory).
    """
    check_not_special(path)
    given = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if not os.path.lexists(given):
        return  # a new output; its parents are created as needed
    is_dir = os.path.isdir(given)
    if is_dir and kind != "file" and not any(os.scandir(given)):
        return  # an empty folder: nothing to lose
    if not force:
        noun = "output directory is not empty" if is_dir else "output file exists"
        raise OutputRefused(f"{path}: {noun}; pass --force to replace it")
    forms = _forms(given)
    own = Path(os.path.abspath(os.fspath(own_run))) if own_run is not None else None
    for form in forms:
        rule = _run_dir_around(form, own)
        if rule:
            raise OutputRefused(f"{path}: {rule}")
    for model in _local_models(protected):
        for form in forms:
            if _contains(form, model):
                where = "is the source model" if form == model else f"holds the source model {model}"
                raise OutputRefused(
                    f"{path}: {where}; --force never replaces a source model or a folder that holds one"
                )
    if kind == "file":
        if is_dir or recognise is None or not recognise(given):
            raise OutputRefused(
                f"{path}: not a file evomerge writes in this format; --force replaces only an earlier evomerge output "
                "(move it away yourself, or choose another output)"
            )
        return
    if not is_dir:
        raise OutputRefused(f"{path}: is a file, not an earlier evomerge {kind} directory; --force does not replace it")
    below = _shallow_run_dir(forms)
    if below is None:
        marker = read_marker(given)
        if marker is None and not (recognise is not None and recognise(given)):
            raise OutputRefused(
                f"{path}: not an evomerge output (no {MARKER}); --force replaces only what evomerge wrote "
                "(move it away yourself, or choose another output)"
            )
        if marker is not None and marker["kind"] != kind:
            raise OutputRefused(
                f"{path}: holds an evomerge {marker['kind']}, not a {kind}; --force replaces only an output of the same kind"
            )
        below = next((b for b in map(_run_dir_below, forms) if b is not None), None)
    if below is not None:
        raise OutputRefused(
            f"{path}: holds the run directory {below}; --force never replaces a run directory, anything in one, "
            "or a folder that holds one"
        )


def _shallow_run_dir(forms: list[Path]) -> Path | None:
    """A run directory directly inside one of ``forms`` (cheap: one listing each)."""
    for form in forms:
        with contextlib.suppress(OSError), os.scandir(form) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False) and is_run_dir(e.path):
                    return Path(e.path)
    return None


def _local_models(models: Iterable[str | os.PathLike]) -> list[Path]:
    out: list[Path] = []
    for m in models:
        text = os.path.expanduser(os.fspath(m))
        if os.path.exists(text):
            out.extend(_forms(text))
    return out


__all__ = [
    "MARKER",
    "OutputRefused",
    "check_not_special",
    "check_replaceable",
    "in_run_dir",
    "is_legacy_checkpoint",
    "is_recipe_yaml",
    "is_run_dir",
    "marker_payload",
    "output_dir",
    "read_marker",
    "write_marker",
]
