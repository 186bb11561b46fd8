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

import errno
import io
import json
import math
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from evomerge.errors import RunDirError
from evomerge.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from evomerge.io.atomic import write_all
from evomerge.io.oserrors import wrap, writing
from evomerge.io.outputs import is_run_dir
from evomerge.runs.checkpoint import CheckpointDir
from evomerge.runs.crash import maybe_crash
from evomerge.runs.logread import inside, parse_log, read_regular

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
        self.progress_path = self.root / "progress.json"
        self._log_fd: int | None = None
        self._warned: set[Path] = set()
        #: where warnings go (a derived file that could not be written); a session may replace it
        self.warn = lambda message: print(message, file=sys.stderr)

    # -- layout -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.config_path.is_file()

    def check_fresh(self) -> None:
        """Raise unless a new run can start here (absent, or a directory holding no run) — cheap,
        so callers check it before any heavy work."""
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"{self.root} is a file, not a run directory; pick another --run-dir")
        if self.exists() and not is_run_dir(self.root) and not self.log_path.exists():
            raise RunDirError(
                f"{self.config_path}: a config.yaml that is not a run's (no {self.log_path.name}, meta.json, lock, "
                "checkpoints/ or progress.json beside it) is there, and a run would replace it; pick another --run-dir"
            )
        if self.exists() or (self.log_path.exists() and self.log_path.stat().st_size > 0):
            raise RunDirError(
                f"run directory {self.root} already holds a run; continue it with `evomerge resume {self.root}` or pick another --run-dir"
            )

    def create(self, config_yaml: str) -> None:
        """A fresh run directory: refuses one that already holds a run (that is ``resume``'s job)."""
        self.check_fresh()
        with writing("the run directory", self.root, verb="creating"):
            self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, config_yaml, what="the run's config")

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
        """Every record in the log (:func:`evomerge.runs.logread.parse_log`: opened without
        following a link, each record checked). A torn last line is dropped (and cut off the file
        when ``repair``, which only the lock holder may ask); any other bad line is a RunDirError."""
        if not os.path.lexists(self.log_path):
            return []
        data = read_regular(self.log_path, what="the evaluation log")
        return parse_log(data, self.log_path, repair=repair, warn=warn)

    def open_log(self) -> None:
        try:
            self._log_fd = os.open(
                self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunDirError(
                    f"{self.log_path}: is a symbolic link; evomerge appends only to a regular file"
                ) from None
            raise wrap(exc, path=self.log_path, doing="opening the evaluation log") from None

    def append(self, record: dict[str, Any]) -> None:
        """One line, fsync — before the driver hears of the candidate. On a full disk (any OS
        error) the log keeps every whole line; a half-written one is dropped at ``resume``."""
        record = to_jsonable(record)
        per_ex = record.get("per_example")
        if per_ex is not None and _count_values(per_ex) > INLINE_PER_EXAMPLE_MAX:
            rel = f"per_example/{int(record['id'])}.json"
            self.side_folder("per_example")
            atomic_write_json(self.root / rel, per_ex, what=f"the per-example scores of candidate {record['id']}")
            record["per_example"] = {"path": rel}
        line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
        if self._log_fd is None:
            self.open_log()
        half = len(line) // 2
        try:
            write_all(self._log_fd, line[:half])
            maybe_crash("log-append")
            write_all(self._log_fd, line[half:])
            os.fsync(self._log_fd)
        except OSError as exc:
            raise wrap(
                exc,
                path=self.log_path,
                doing=f"writing candidate {record.get('id')} to the evaluation log; "
                f"`evomerge resume {self.root}` continues from the last whole line",
            ) from None
        maybe_crash("after-append")

    def side_folder(self, name: str) -> Path:
        """``RUN_DIR/<name>/``, created when absent; a link or a file there is refused."""
        path = self.root / name
        try:
            path.mkdir(exist_ok=True)
        except FileExistsError:
            pass
        except OSError as exc:
            raise wrap(exc, path=path, doing=f"creating {name}/ in the run directory") from None
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise RunDirError(
                f"{path}: is a link or a file, not a folder of the run directory; evomerge does not write there"
            )
        return path

    def write_array(self, rel: str, array: Any, *, what: str) -> None:
        """``np.save`` of ``array`` at ``RUN_DIR/rel`` (under a :meth:`side_folder`), atomically."""
        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        self.side_folder(rel.split("/", 1)[0])
        atomic_write_bytes(self.root / rel, buf.getvalue(), what=what)

    def read_array(self, rel: str, *, field: str, cid: Any) -> np.ndarray:
        """The array at ``RUN_DIR/rel`` (a record's ``{field: {"path": rel}}``, candidate ``cid``)."""
        path = inside(self.root, rel, field=field)
        try:
            return np.load(io.BytesIO(read_regular(path, what=f"the {field} of candidate {cid}")), allow_pickle=False)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise RunDirError(f"{path}: cannot read the {field} of candidate {cid} ({why})") from None

    def per_example(self, record: dict[str, Any]) -> Any:
        per_ex = record.get("per_example")
        if isinstance(per_ex, dict) and set(per_ex) == {"path"}:
            cid = record.get("id")
            path = inside(self.root, per_ex["path"], field="per_example")
            try:
                return json.loads(read_regular(path, what=f"the per-example scores of candidate {cid}"))
            except (OSError, ValueError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not valid JSON"
                raise RunDirError(f"{path}: cannot read the per-example scores of candidate {cid} ({why})") from None
        return per_ex

    def close(self) -> None:
        if self._log_fd is not None:
            fd, self._log_fd = self._log_fd, None
            os.close(fd)

    # -- results a user takes away: derived from the log, so a failed write only warns -----
    def _derived(
        self, path: Path, what: str, write, tail: str = "the run goes on without it (rewritten at the next change)"
    ) -> bool:
        """``write()``; an OS error (a full disk, a read-only folder) warns once per file and the
        run goes on: the file is rewritten at the next change, and ``resume`` rebuilds it."""
        try:
            write()
        except (OSError, RunDirError) as exc:
            if path not in self._warned:
                self._warned.add(path)
                self.warn(f"warning: {exc}; {tail}")
            return False
        self._warned.discard(path)
        return True

    def write_best(self, record: dict[str, Any], recipe_yaml: str) -> bool:
        def write():
            folder = self.side_folder("best")
            atomic_write_text(folder / "recipe.yaml", recipe_yaml, what="the best recipe")
            atomic_write_json(
                folder / "candidate.json", to_jsonable(record), indent=2, sort_keys=True, what="the best candidate"
            )

        return self._derived(self.best_dir, "the best recipe", write)

    def write_pareto(self, objective_names: list[str], records: Iterable[dict[str, Any]]) -> bool:
        front = [
            {"id": r["id"], "objectives": r.get("objectives"), "score": r.get("score"), "recipe": r.get("recipe")}
            for r in records
        ]
        payload = to_jsonable({"objectives": objective_names, "front": front})
        return self._derived(
            self.pareto_path,
            "the Pareto front",
            lambda: atomic_write_json(self.pareto_path, payload, indent=2, what="the Pareto front"),
        )

    def write_progress(self, obj: dict[str, Any]) -> bool:
        return self._derived(
            self.progress_path, "progress", lambda: self.write_json(self.progress_path, obj, what="progress")
        )

    def write_validation(self, obj: dict[str, Any]) -> bool:
        """``validation.json``: a cache of the best candidate's held-out scores (recomputed when missing)."""
        return self._derived(
            self.validation_path,
            "the held-out scores",
            lambda: self.write_json(self.validation_path, obj, what="the held-out scores"),
            tail="not cached (computed again when asked)",
        )

    def read_json(self, path: Path) -> Any:
        if not os.path.lexists(path):
            return None
        try:
            return json.loads(read_regular(path, what=path.name))
        except ValueError:
            raise RunDirError(f"{path} is not valid JSON") from None

    def write_json(self, path: Path, obj: Any, *, what: str | None = None) -> None:
        atomic_write_json(path, to_jsonable(obj), indent=2, sort_keys=True, what=what or path.name)


def _count_values(obj: Any) -> int:
    if isinstance(obj, dict):
        return sum(_count_values(v) for v in obj.values())
    if isinstance(obj, list):
        return len(obj) if not obj or not isinstance(obj[0], (list, dict)) else sum(_count_values(v) for v in obj)
    return 1
