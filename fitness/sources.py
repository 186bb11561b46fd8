"""Read a task's raw rows (a list of dicts) from files, `datasets`, or a registered generator."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from evomerge.errors import ConfigError
from evomerge.fitness import generators
from evomerge.fitness.config import SourceConfig


def resolve_path(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


def load_rows(
    source: SourceConfig, *, task: str, base_dir: Path | None = None
) -> tuple[list[dict], str, list[int] | None]:
    """Return ``(rows, where, lines)``; ``where`` names the source in error messages and
    ``lines`` the file line each row starts on (text files; ``None`` for other sources), so that
    a bad row is reported where the user's editor shows it (blank JSONL lines are skipped)."""
    kind = source.type
    if kind == "generator":
        fn = generators.get(source.name)
        rows = fn(**source.params)
        where = f"generator {source.name!r}"
        return _check_rows(list(rows), where), where, None
    if kind == "lmeval":
        raise ConfigError(f"task {task!r}: lmeval sources are read by evomerge.fitness.lmeval, not as rows")
    if kind == "datasets":
        return (*_load_datasets(source, task=task, base_dir=base_dir), None)
    path = resolve_path(source.path, base_dir)
    if path.is_dir():
        raise ConfigError(f"task {task!r}: source.path {path} is a directory, expected a {kind} file")
    if not path.is_file():
        raise ConfigError(f"task {task!r}: {kind} file not found: {path}")
    where = str(path)
    lines: list[int] | None = None
    if kind == "jsonl":
        rows, lines = [], []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
                lines.append(lineno)
    elif kind == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            rows, lines = [], []
            start = 2  # the header is line 1; a quoted field may span lines, so count the reader's
            for row in reader:
                rows.append(row)
                lines.append(start)
                start = reader.line_num + 1
    elif kind == "parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise ConfigError(f"{path}: cannot read parquet ({exc})") from None
    else:  # pragma: no cover - the config validator rejects other types
        raise ConfigError(f"task {task!r}: unknown source type {kind!r}")
    return _check_rows(rows, where, lines), where, lines


def _load_datasets(source: SourceConfig, *, task: str, base_dir: Path | None):
    import datasets

    split = source.split or "train"
    local = resolve_path(source.path, base_dir)
    where = f"dataset {source.path!r} split {split!r}"
    if local.is_dir() and ((local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(local))  # a save_to_disk folder
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ConfigError(f"task {task!r}: {where}: no such split; has {', '.join(ds)}")
            ds = ds[split]
    else:
        target = str(local) if local.exists() else source.path
        try:
            ds = datasets.load_dataset(target, source.name, split=split)
        except Exception as exc:  # offline hub, unknown dataset, bad split: one line either way
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"task {task!r}: cannot load {where}: {first}") from None
    return _check_rows(ds.to_list(), where), where


def row_place(where: str, lines: list[int] | None, i: int) -> str:
    """``file:line`` for a row of a text file, ``source row i`` otherwise."""
    return f"{where}:{lines[i]}" if lines else f"{where} row {i}"


def _check_rows(rows: list, where: str, lines: list[int] | None = None) -> list[dict]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(f"{row_place(where, lines, i)}: row is {type(row).__name__}, expected a mapping")
    return rows
