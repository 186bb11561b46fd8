"""Read a task's raw rows (a list of dicts) from files, `datasets`, or a registered generator."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from evomerge.errors import ConfigError

from fitness import generators
from fitness.config import SourceConfig


def resolve_path(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


def load_rows(source: SourceConfig, *, task: str, base_dir: Path | None = None) -> tuple[list[dict], str]:
    """Return ``(rows, where)``; ``where`` names the source in error messages."""
    kind = source.type
    if kind == "generator":
        fn = generators.get(source.name)
        rows = fn(**source.params)
        where = f"generator {source.name!r}"
        return _check_rows(list(rows), where), where
    if kind == "lmeval":
        raise ConfigError(f"task {task!r}: lmeval sources are read by fitness.lmeval, not as rows")
    if kind == "datasets":
        return _load_datasets(source, task=task, base_dir=base_dir)
    path = resolve_path(source.path, base_dir)
    if not path.is_file():
        raise ConfigError(f"task {task!r}: {kind} file not found: {path}")
    where = str(path)
    if kind == "jsonl":
        rows = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
    elif kind == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    elif kind == "parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise ConfigError(f"{path}: cannot read parquet ({exc})") from None
    else:  # pragma: no cover - the config validator rejects other types
        raise ConfigError(f"task {task!r}: unknown source type {kind!r}")
    return _check_rows(rows, where), where


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


def _check_rows(rows: list, where: str) -> list[dict]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: row {i} is {type(row).__name__}, expected a mapping")
    return rows
