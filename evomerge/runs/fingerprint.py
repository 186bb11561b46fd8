"""What a run was started with, so that ``resume`` can refuse a run whose config or models changed.

* The **config view**: the resolved config (``config.yaml`` as parsed, defaults filled in) without
  the keys that only say how long or where the search runs — :data:`OPERATIONAL` (the budget, the
  checkpoint cadence, the failure breaker, time limits, the evaluator's backend, device, address
  and resources). Changing those is how a user extends or moves a run; anything else (method, ranges,
  models, scorer, seed, dtype, …) changes what the scores mean.
* The **models**: per model of the run, a hash of its ``config.json``, of its tensor names, shapes
  and dtypes (from the headers), and of the names and sizes of its weight files — never of the
  weights themselves.

``meta.json`` holds both (``fingerprint``); every checkpoint holds their hashes.
:func:`config_changes` names what differs, one phrase per key
(``space.method changed from ties to dare_ties``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: Dotted keys left out of the config view (see the module docstring).
OPERATIONAL = (
    "description",
    "budget",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.max_attempts",
    "run.failure_breaker",
    "evaluator.backend",
    "evaluator.device",
    "evaluator.address",
    "evaluator.num_workers",
    "evaluator.num_gpus",
    "evaluator.num_cpus",
    "evaluator.timeout",
    "evaluator.hard_timeout_grace",
    "evaluator.max_attempts",
)

_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def config_view(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """``resolved`` (the config.yaml mapping) without the :data:`OPERATIONAL` keys."""
    view = json.loads(json.dumps(dict(resolved)))
    for dotted in OPERATIONAL:
        *parents, last = dotted.split(".")
        node = view
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return view


def model_fingerprint(ref: str) -> dict[str, str]:
    """Hashes of one model's config, tensor headers and weight files (see the module docstring)."""
    from evomerge.pool.lazy import LazyCheckpoint
    from evomerge.pool.resolve import resolve_model

    directory = resolve_model(ref)
    config = directory / "config.json"
    ckpt = LazyCheckpoint(directory, label=ref)
    try:
        tensors = {name: [str(ckpt.meta(name)[1]), list(ckpt.meta(name)[0])] for name in ckpt.keys()}
    finally:
        ckpt.close()
    files = sorted({p for pattern in _WEIGHT_FILES for p in Path(directory).glob(pattern)})
    return {
        "config": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else "",
        "tensors": sha256_json(tensors),
        "files": sha256_json([[p.name, p.stat().st_size] for p in files]),
    }


def models_fingerprint(models: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"models.base": {path, config, tensors, files}, "models.experts.NAME": …}`` of a problem's
    ``models`` (``{"base": path, "experts": {name: path}}``; empty for a model-free problem)."""
    roles: dict[str, str] = {}
    if models.get("base") is not None:
        roles["models.base"] = str(models["base"])
    for name, path in (models.get("experts") or {}).items():
        roles[f"models.experts.{name}"] = str(path)
    return {role: {"path": path, **model_fingerprint(path)} for role, path in roles.items()}


def fingerprint(resolved: Mapping[str, Any], models: Mapping[str, Any]) -> dict[str, Any]:
    """``meta.json``'s ``fingerprint``: the config view, the models' hashes, and a hash of each."""
    view = config_view(resolved)
    per_model = models_fingerprint(models)
    return {
        "config": view,
        "config_sha256": sha256_json(view),
        "models": per_model,
        "models_sha256": sha256_json(
            {role: {k: v for k, v in m.items() if k != "path"} for role, m in per_model.items()}
        ),
    }


def short(fp: Mapping[str, Any]) -> dict[str, str]:
    """The two hashes a checkpoint keeps."""
    return {"config_sha256": str(fp.get("config_sha256")), "models_sha256": str(fp.get("models_sha256"))}


# -- naming what changed ----------------------------------------------------------------------
def config_changes(old: Any, new: Any, path: str = "") -> Iterator[str]:
    """One phrase per differing key, in the old config's order."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                yield f"{where} was removed (it was {_fmt(old[key])})"
            elif key not in old:
                yield f"{where} was added ({_fmt(new[key])})"
            else:
                yield from config_changes(old[key], new[key], where)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from config_changes(a, b, f"{path}[{i}]")
    elif old != new or type(old) is not type(new) and not _same_number(old, new):
        yield f"{path} changed from {_fmt(old)} to {_fmt(new)}"


def model_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[str]:
    what = {"config": "its config.json", "tensors": "its tensor names, shapes or dtypes", "files": "its weight files"}
    for role, then in old.items():
        now = new.get(role)
        if now is None or now.get("path") != then.get("path"):
            continue  # a different path is a config change, named by config_changes
        changed = [what[k] for k in what if then.get(k) != now.get(k)]
        if changed:
            yield f"{role} ({then.get('path')}): {' and '.join(changed)} changed"


def _same_number(a: Any, b: Any) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and a == b


def _fmt(value: Any) -> str:
    """A plain string (a path, a name) in full; anything else as JSON, cut at 80 characters."""
    if isinstance(value, str) and value and " " not in value:
        return value
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = [
    "OPERATIONAL",
    "config_changes",
    "config_view",
    "fingerprint",
    "model_changes",
    "model_fingerprint",
    "models_fingerprint",
    "sha256_json",
    "short",
]
