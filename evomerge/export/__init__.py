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
from evomerge.io import atomic_write_text, writing
from evomerge.io.atomic import make_parents
from evomerge.io.outputs import check_replaceable, is_recipe_yaml
from evomerge.merge.materialize import check_out_dir
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


_WHAT = {"recipe": "the recipe YAML", "mergekit": "the mergekit YAML"}


def check_one(record: dict, format: str, out: Path, *, force: bool = False):
    """The recipe of ``record`` once ``out`` is known to be writable for ``format`` (nothing written).

    ``force`` replaces only an earlier evomerge output (:func:`evomerge.io.outputs.check_replaceable`):
    a recipe or mergekit YAML for the file formats, an evomerge checkpoint for ``hf``; never a run
    directory or anything in one, a model the recipe reads, ``.``, ``$HOME`` or ``/``.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    obj = _recipe_obj(record.get("recipe"))
    if format == "hf":
        if (out.exists() or out.is_symlink()) and not out.is_dir():
            raise ConfigError(f"output {out} is a file; --format hf writes a checkpoint directory")
        check_out_dir(out, force, obj.model_ids())
        return obj
    if out.is_dir():  # --force replaces a file, never a directory
        raise ConfigError(f"output {out} is a directory; this format writes one YAML file: give a file name")
    check_replaceable(out, kind="file", force=force, protected=obj.model_ids(), recognise=is_recipe_yaml)
    return obj


def write_one(obj, format: str, out: Path, *, force: bool = False, progress: bool = False) -> Path:
    """Write the checked recipe ``obj`` (:func:`check_one`) to ``out`` atomically."""
    if format == "hf":
        return Path(obj.materialize(out, force=force, progress=progress))
    text = obj.to_yaml() if format == "recipe" else obj.to_mergekit_yaml()
    with writing(_WHAT[format], out):
        make_parents(out)
    atomic_write_text(out, text, what=_WHAT[format])
    return out


def export_one(record: dict, format: str, out: Path, *, force: bool = False, progress: bool = False) -> Path:
    return write_one(check_one(record, format, out, force=force), format, out, force=force, progress=progress)


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
    out = Path(out).expanduser()
    if which != "pareto":
        return [export_one(chosen[0], format, out, force=force)]
    # One output per front member, under OUT/ (ids are integers: read_log checks).
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise ConfigError(f"--which pareto writes one file per candidate: -o must be a directory, got file {out}")
    suffix = {"recipe": ".yaml", "mergekit": ".mergekit.yaml", "hf": ""}[format]
    targets = [(rec, out / f"candidate-{int(rec['id'])}{suffix}") for rec in chosen]
    objs = [check_one(rec, format, path, force=force) for rec, path in targets]  # every output before any write
    return [write_one(obj, format, path, force=force) for obj, (_, path) in zip(objs, targets)]


__all__ = ["FORMATS", "check_one", "export", "export_one", "select", "stage_records", "write_one"]
