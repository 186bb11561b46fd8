"""``evomerge export``: a run's result as something a user takes away.

``which``: ``best`` (highest scalarised score), ``pareto`` (every non-dominated candidate, one
output each under OUT/<id>…), or a candidate id; ``stage``: choose among one stage's candidates of
a staged run (sequential PS+DFS: ``ps`` is the PS winner alone, ``dfs`` the data-flow stage's,
whose recipes nest the PS winner as model A), read by the report's stage contract
(:mod:`evomerge.report.stages`; a ps stage that ran elsewhere is read from its ``run_dir``).
``format``:

- ``recipe``: our recipe YAML (parameter-space :class:`~evomerge.merge.recipes.parameter.Recipe` or a
  data-flow recipe) — ``evomerge merge`` rebuilds the model from it;
- ``mergekit``: a mergekit YAML (``merge_method`` with the same parameters, or a ``passthrough``
  of layer slices with the data-flow scales folded into the output projections);
- ``hf``: a Hugging Face checkpoint directory (``from_pretrained`` loads it), written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evomerge.errors import ConfigError, RunDirError
from evomerge.io import atomic_write_text
from evomerge.merge.recipes import parse_recipe
from evomerge.runs.store import RunStore
from evomerge.runs.summary import best_record, pareto_records

FORMATS = ("recipe", "mergekit", "hf")


def stage_records(store: RunStore, stage: str) -> list[dict[str, Any]]:
    """The records of ``stage`` of a staged run (the report's stage contract)."""
    from evomerge.report.stages import read_stages

    meta = store.read_json(store.root / "meta.json")
    stages = read_stages(store.root, meta if isinstance(meta, dict) else {}, store.read_log())
    for st in stages:
        if st.name == stage:
            return st.records
    known = ", ".join(st.name for st in stages)
    raise ConfigError(
        f"--stage: {store.root} has no stage {stage!r} ({'its stages: ' + known if known else 'it is not a staged run'})"
    )


def select(store: RunStore, which: str | int, stage: str | None = None) -> list[dict[str, Any]]:
    records = store.read_log() if stage is None else stage_records(store, stage)
    ok = [r for r in records if r.get("status") == "ok"]
    if which == "best":
        best = best_record(records)
        if best is None:
            raise RunDirError(f"{store.root}: no successful evaluation yet; nothing to export")
        return [best]
    if which == "pareto":
        front = pareto_records(records)
        if not front:
            raise RunDirError(f"{store.root}: no successful evaluation yet; nothing to export")
        return front
    try:
        cid = int(which)
    except (TypeError, ValueError):
        raise ConfigError(f"--which: expected best, pareto or a candidate id, got {which!r}") from None
    for r in records:
        if r["id"] == cid:
            if r.get("status") != "ok":
                raise RunDirError(
                    f"candidate {cid} failed ({r.get('error')}); only successful candidates can be exported"
                )
            return [r]
    ids = [r["id"] for r in ok]
    span = f"{min(ids)}..{max(ids)}" if ids else "none"
    raise RunDirError(f"{store.log_path}: no candidate with id {cid} (ok ids: {span})")


def _recipe_obj(recipe: dict):
    if recipe is None:
        raise ConfigError(
            "this run's candidates are raw weight vectors (problem: digits), not merge recipes; nothing to export"
        )
    return parse_recipe(recipe)


def _write_text(path: Path, text: str, force: bool) -> Path:
    if path.is_dir():  # --force replaces a file, never a directory
        raise ConfigError(f"output {path} is a directory; this format writes one YAML file: give a file name")
    if path.exists() and not force:
        raise ConfigError(f"output {path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def export_one(record: dict, format: str, out: Path, *, force: bool = False, progress: bool = False) -> Path:
    obj = _recipe_obj(record.get("recipe"))
    if format == "recipe":
        return _write_text(out, obj.to_yaml(), force)
    if format == "mergekit":
        return _write_text(out, obj.to_mergekit_yaml(), force)
    if format == "hf":
        if out.exists() and not out.is_dir():
            raise ConfigError(f"output {out} is a file; --format hf writes a checkpoint directory")
        if out.exists() and any(out.iterdir()) and not force:
            raise ConfigError(f"output directory {out} is not empty; pass --force to overwrite it")
        return Path(obj.materialize(out, force=True, progress=progress))
    raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")


def export(
    run_dir: str | Path,
    which: str | int = "best",
    format: str = "recipe",
    out: str | Path = "export",
    *,
    force: bool = False,
    stage: str | None = None,
) -> list[Path]:
    """Export the selected candidate(s) (of ``stage`` only, when given); returns the written
    paths (one per candidate)."""
    if format not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    store = RunStore(run_dir)
    store.require()
    chosen = select(store, which, stage)
    out = Path(out)
    if which != "pareto":
        return [export_one(chosen[0], format, out, force=force)]
    # One output per front member, under OUT/.
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--which pareto writes one file per candidate: -o must be a directory, got file {out}")
    suffix = {"recipe": ".yaml", "mergekit": ".mergekit.yaml", "hf": ""}[format]
    paths = []
    for rec in chosen:
        paths.append(export_one(rec, format, out / f"candidate-{rec['id']}{suffix}", force=force))
    return paths


__all__ = ["FORMATS", "export", "export_one", "select", "stage_records"]
