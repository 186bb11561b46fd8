"""Where toy worlds live, and building one at most once.

A world is found at ``<cache>/toyworld/<key>`` (``<cache>`` = ``$EVOMERGE_CACHE`` or
``$XDG_CACHE_HOME/evomerge`` or ``~/.cache/evomerge``), or in a directory the caller names.
``key`` hashes every setting plus a format version, so a change of settings never reuses an old
world. A world is complete when its ``manifest.json`` (written last) names that key and every
model file it lists is there; anything else is rebuilt.

Building is atomic and exclusive: an ``fcntl`` lock on ``<dir>.lock`` keeps a second process
from building the same world at once (it waits and then finds the first one's), and the models
are trained into a temporary sibling directory that is renamed into place only when complete
(:func:`evomerge.io.outputs.output_dir`, which also leaves the marker of an evomerge output), so an
interrupted build never leaves a world that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from evomerge.errors import EvomergeError
from evomerge.io import writing
from evomerge.io.atomic import make_parents
from evomerge.io.outputs import check_not_special, check_replaceable, output_dir

MANIFEST = "manifest.json"
#: The marker kind of a toy world folder (:mod:`evomerge.io.outputs`).
WORLD_KIND = "toyworld"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def cache_root() -> Path:
    if os.environ.get("EVOMERGE_CACHE"):
        return Path(os.environ["EVOMERGE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "evomerge"


def world_dir(key: str, directory: str | os.PathLike | None = None) -> Path:
    return Path(directory).expanduser().resolve() if directory is not None else cache_root() / "toyworld" / key


def read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: Path, key: str) -> bool:
    manifest = read_manifest(root)
    if not manifest or manifest.get("key") != key:
        return False
    models = [manifest.get("base", "")] + list(manifest.get("experts", {}).values())
    return all((root / m / f).is_file() for m in models for f in MODEL_FILES)


@contextlib.contextmanager
def exclusive(root: Path):
    """Hold an exclusive lock on ``<root>.lock`` (blocking) for the block's duration."""
    make_parents(root)
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_atomically(root: Path, key: str, build, *, force: bool = False) -> bool:
    """Make ``root`` a complete world of ``key``, calling ``build(tmp_dir)`` if it is not one.

    Returns True when it built, False when an existing complete world was found. An existing
    ``root`` that is not a toy world (no manifest, not empty) is never deleted: that is an error.
    """
    if root.exists() and not root.is_dir():
        raise EvomergeError(f"{root}: is a file; the toy world needs a directory (choose an empty or new one)")
    check_not_special(root)
    with writing("the toy world", root), exclusive(root):
        if not force and is_complete(root, key):
            return False
        if root.exists() and read_manifest(root) is None and any(root.iterdir()):
            raise EvomergeError(
                f"{root}: exists and is not a toy world (no {MANIFEST}); choose an empty or new directory"
            )
        # Only a toy world is rebuilt over (never a run directory, or a folder holding one).
        check_replaceable(root, kind=WORLD_KIND, force=True, recognise=lambda p: read_manifest(p) is not None)
        # The old world (a forced rebuild) stays in place until the new one is complete.
        with output_dir(root, kind=WORLD_KIND, writer="evomerge toyworld", what="the toy world") as tmp:
            build(tmp)
        return True
