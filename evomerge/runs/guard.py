"""What ``run`` and ``resume`` check before they write anything, and how ``run`` backs out.

* :func:`check_environment` — the evaluator can run here: an in-process backend's device exists
  (``cuda`` on a machine without CUDA, ``cuda:3`` on one with two GPUs, ``mps`` off a Mac), the Ray
  backend's package is installed and its cluster answers;
* :func:`config_changed` / :func:`models_changed` — ``resume`` only: the config and the models are those the run started
  with (:mod:`evomerge.runs.fingerprint`), or the user said ``--allow-config-change``;
* :func:`discard_new_run` — a ``run`` whose backend failed before any result was logged removes
  exactly the files it created (and the directory, if it created that), so no half-made run
  directory blocks the next ``run``; once a result is logged the directory is a resumable run and
  is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evomerge.config import RunConfig
from evomerge.errors import ConfigError, RunDirError
from evomerge.runs.fingerprint import config_changes, config_view, model_changes, sha256_json

#: Files and folders a run directory's writers create (what :func:`discard_new_run` may remove).
RUN_FILES = (
    "config.yaml",
    "meta.json",
    "progress.json",
    "evaluations.jsonl",
    "attempts.json",
    "pareto.json",
    "validation.json",
    "summary.json",
    "lock",
)
RUN_FOLDERS = ("checkpoints", "best", "per_example", "genomes")


def check_environment(cfg: RunConfig, source: str) -> None:
    ev = cfg.evaluator
    if ev.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{source}: evaluator.backend: ray needs the ray package, which is not installed "
                "(pip install 'ray[default]')"
            ) from None
        if ev.address:
            from evomerge.evaluator.ray_connect import check_reachable

            check_reachable(ev.address)
        return
    check_device(ev.device, f"{source}: evaluator.device")


def check_device(device: str, where: str) -> None:
    """``device`` (auto, cpu, cuda, cuda:N, mps) exists on this machine; else one line."""
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{where}: {device!r} requested but CUDA is not available on this machine (use cpu or auto)"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(f"{where}: {device!r} requested but this machine has {count} CUDA device(s)")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}: 'mps' requested but MPS is not available on this machine (use cpu or auto)")


# -- resume: the run's config and models --------------------------------------------------------
HINT = "resume with --allow-config-change to continue anyway"


def config_changed(meta: Mapping[str, Any] | None, resolved: Mapping[str, Any]) -> list[str]:
    """What changed in the config since the run started, one phrase per key ([] if nothing).
    ``meta``: meta.json (None, or no ``fingerprint``: an older run directory — nothing to compare)."""
    fp = (meta or {}).get("fingerprint")
    if not isinstance(fp, Mapping):
        return []
    now = config_view(resolved)
    if sha256_json(now) == fp.get("config_sha256"):
        return []
    then = fp.get("config")
    if not isinstance(then, Mapping) or sha256_json(then) != fp.get("config_sha256"):
        return ["the config changed (meta.json no longer records how)"]
    return list(config_changes(then, now)) or ["the config changed"]


def models_changed(meta: Mapping[str, Any] | None, models: Mapping[str, Any]) -> list[str]:
    """What changed in the models (same paths) since the run started, one phrase per model."""
    fp = (meta or {}).get("fingerprint")
    if not isinstance(fp, Mapping) or not isinstance(fp.get("models"), Mapping):
        return []
    return list(model_changes(fp["models"], models))


def change_message(changes: list[str], tail: str = HINT) -> str:
    """``first change (and n more changes) since the run started; resume with …``."""
    more = f" (and {len(changes) - 1} more change{'s' if len(changes) > 2 else ''})" if len(changes) > 1 else ""
    return f"{changes[0]}{more} since the run started; {tail}"


def refuse_changed(changes: list[str]) -> None:
    if changes:
        raise RunDirError(change_message(changes))


# -- run: backing out of a directory that never held a result ---------------------------------
def discard_new_run(root: Path, created_dir: bool) -> None:
    """Remove the files a fresh run wrote into ``root`` (never anything else), then ``root``
    itself when this command created it and it is empty."""
    for name in RUN_FILES:
        (root / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        folder = root / name
        if folder.is_dir() and not folder.is_symlink():
            for p in folder.iterdir():
                if p.is_file() and not p.is_symlink() and (name != "checkpoints" or p.name.startswith(("ckpt-", "."))):
                    p.unlink()
            _rmdir(folder)
    if created_dir:
        _rmdir(root)


def _rmdir(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty: something this command did not write is inside; leave it


__all__ = [
    "HINT",
    "RUN_FILES",
    "change_message",
    "check_device",
    "check_environment",
    "config_changed",
    "discard_new_run",
    "models_changed",
    "refuse_changed",
]
