"""The run directory: resolved config, evaluation log, best recipe, Pareto front.

Layout (docs/design.md)::

    RUN_DIR/
      config.yaml             the resolved config (what ``resume`` rebuilds the run from)
      evaluations.jsonl       append-only, one JSON object per evaluated candidate
      per_example/<id>.json   per-example scores too large to sit inline in their log line
      checkpoints/            see :mod:`evomerge.runs.checkpoint`
      best/recipe.yaml        the best candidate's recipe, rewritten on every improvement
      best/candidate.json     its log record
      pareto.json             the non-dominated candidates, rewritten when the front changes
      validation.json         held-out scores of the best candidate (cache for ``status``)
      lock                    see :mod:`evomerge.runs.lock`

The log is the run's source of truth. Each line is written with one ``write`` and ``fsync``\\ ed
before the candidate is told to the driver, so a kill at any instant loses at most the line being
written; a torn last line (no newline, or not JSON) is detected and dropped when the run is
opened again. A bad line anywhere else is damage the user must see, not something to skip.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from evomerge.errors import RunDirError
from evomerge.io import atomic_write_json, atomic_write_text
from evomerge.runs.checkpoint import CheckpointDir
from evomerge.runs.crash import maybe_crash

LOG_NAME = "evaluations.jsonl"
CONFIG_NAME = "config.yaml"

#: Fields of a log record that depend on the machine and the clock rather than on the search.
#: Two runs with the same config and seed (in-process backend) have equal records once these are
#: removed — the definition of "the resumed log equals the uninterrupted one".
VOLATILE_FIELDS = ("merge_seconds", "eval_seconds", "started", "finished", "worker")
#: Inside nested result payloads (``fitness``), keys that hold clock readings.
_VOLATILE_NESTED = ("seconds", "wall_time", "time", "elapsed", "tokens_per_second", "throughput")

#: Per-example scores with more values than this go to ``per_example/<id>.json``.
INLINE_PER_EXAMPLE_MAX = 4096


def to_jsonable(obj: Any) -> Any:
    """numpy / tuples / non-finite floats → plain JSON (NaN and ±inf as strings JSON can hold)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if hasattr(obj, "model_dump"):
        return to_jsonable(obj.model_dump(mode="json"))
    return obj


def as_float(v: Any) -> float:
    if isinstance(v, str):
        return float(v)  # "nan", "inf", "-inf"
    return float(v)


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without its clock- and machine-dependent fields (see :data:`VOLATILE_FIELDS`)."""

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not any(t in k for t in _VOLATILE_NESTED)}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    return strip({k: v for k, v in record.items() if k not in VOLATILE_FIELDS})


class RunStore:
    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)
        self.log_path = self.root / LOG_NAME
        self.config_path = self.root / CONFIG_NAME
        self.best_dir = self.root / "best"
        self.pareto_path = self.root / "pareto.json"
        self.validation_path = self.root / "validation.json"
        self.summary_path = self.root / "summary.json"
        self.per_example_dir = self.root / "per_example"
        self._log_file = None

    # -- layout -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.config_path.is_file()

    def check_fresh(self) -> None:
        """Raise unless a new run can start here (absent, or a directory holding no run) — cheap,
        so callers check it before any heavy work."""
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"{self.root} is a file, not a run directory; pick another --run-dir")
        if self.exists() or (self.log_path.exists() and self.log_path.stat().st_size > 0):
            raise RunDirError(
                f"run directory {self.root} already holds a run; continue it with `evomerge resume {self.root}` or pick another --run-dir"
            )

    def create(self, config_yaml: str) -> None:
        """A fresh run directory: refuses one that already holds a run (that is ``resume``'s job)."""
        self.check_fresh()
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, config_yaml)

    def require(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"{self.root} is a file, not a run directory")
        if not self.root.is_dir():
            raise RunDirError(f"run directory {self.root} does not exist")
        if not self.config_path.is_file():
            raise RunDirError(f"{self.root} is not an evomerge run directory (no {CONFIG_NAME})")

    def checkpoints(self, keep: int = 2) -> CheckpointDir:
        return CheckpointDir(self.root / "checkpoints", keep=keep)

    # -- the log ------------------------------------------------------------------------------
    def read_log(self, *, repair: bool = False, warn=None) -> list[dict[str, Any]]:
        """Every record in the log. A torn last line is dropped (and cut off the file when
        ``repair``, which only the lock holder may ask); any other bad line is a RunDirError."""
        if not self.log_path.exists():
            return []
        data = self.log_path.read_bytes()
        records: list[dict[str, Any]] = []
        pos = 0
        lineno = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            lineno += 1
            last = end == -1 or end == len(data) - 1
            chunk = data[pos:] if end == -1 else data[pos:end]
            try:
                if end == -1:
                    raise ValueError("no newline")
                try:
                    rec = json.loads(chunk)
                except ValueError:
                    raise ValueError("not JSON") from None
                if not isinstance(rec, dict):
                    raise ValueError(f"a JSON {type(rec).__name__}, not an object")
                # the fields every reader (status, export, resume) relies on
                missing = [k for k in ("id", "status") if k not in rec]
                if missing:
                    raise ValueError(f"no {' or '.join(repr(k) for k in missing)} field")
            except ValueError as why:
                if last:
                    if repair:
                        with open(self.log_path, "r+b") as f:
                            f.truncate(pos)
                            f.flush()
                            os.fsync(f.fileno())
                    (warn or (lambda m: print(m, file=sys.stderr)))(
                        f"warning: {self.log_path} ends in a partly written line (line {lineno}); dropped it"
                    )
                    break
                raise RunDirError(
                    f"{self.log_path}: line {lineno} is not a valid evaluation record ({why}); the log is damaged"
                ) from None
            records.append(rec)
            if end == -1:
                break
            pos = end + 1
        return records

    def open_log(self) -> None:
        self._log_file = open(self.log_path, "ab")

    def append(self, record: dict[str, Any]) -> None:
        """One line, one write, fsync — before the driver hears of the candidate."""
        record = to_jsonable(record)
        per_ex = record.get("per_example")
        if per_ex is not None and _count_values(per_ex) > INLINE_PER_EXAMPLE_MAX:
            self.per_example_dir.mkdir(exist_ok=True)
            rel = f"per_example/{record['id']}.json"
            atomic_write_json(self.root / rel, per_ex)
            record["per_example"] = {"path": rel}
        line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
        if self._log_file is None:
            self.open_log()
        f = self._log_file
        half = len(line) // 2
        f.write(line[:half])
        f.flush()
        maybe_crash("log-append")
        f.write(line[half:])
        f.flush()
        os.fsync(f.fileno())
        maybe_crash("after-append")

    def per_example(self, record: dict[str, Any]) -> Any:
        per_ex = record.get("per_example")
        if isinstance(per_ex, dict) and set(per_ex) == {"path"}:
            return json.loads((self.root / per_ex["path"]).read_text())
        return per_ex

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- results a user takes away ------------------------------------------------------------
    def write_best(self, record: dict[str, Any], recipe_yaml: str) -> None:
        self.best_dir.mkdir(exist_ok=True)
        atomic_write_text(self.best_dir / "recipe.yaml", recipe_yaml)
        atomic_write_json(self.best_dir / "candidate.json", to_jsonable(record), indent=2, sort_keys=True)

    def write_pareto(self, objective_names: list[str], records: Iterable[dict[str, Any]]) -> None:
        front = [
            {"id": r["id"], "objectives": r.get("objectives"), "score": r.get("score"), "recipe": r.get("recipe")}
            for r in records
        ]
        atomic_write_json(self.pareto_path, to_jsonable({"objectives": objective_names, "front": front}), indent=2)

    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            raise RunDirError(f"{path} is not valid JSON") from None

    def write_json(self, path: Path, obj: Any) -> None:
        atomic_write_json(path, to_jsonable(obj), indent=2, sort_keys=True)


def _count_values(obj: Any) -> int:
    if isinstance(obj, dict):
        return sum(_count_values(v) for v in obj.values())
    if isinstance(obj, list):
        return len(obj) if not obj or not isinstance(obj[0], (list, dict)) else sum(_count_values(v) for v in obj)
    return 1
