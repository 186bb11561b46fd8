"""The stages of a run (sequential PS+DFS: a parameter-space search, then a data-flow search over
its winner), read from the run directory by the contract below.

On-disk contract (all of it optional: a run without it is one stage):

* **records** — an evaluation record of a staged run names its stage in ``meta.stage`` (a
  string, e.g. ``"ps"`` / ``"dfs"``) in ``evaluations.jsonl``. The log holds the stages one after
  another;
* **meta.json** — ``stages``: the stages in execution order, each a mapping with ``name`` (the
  ``meta.stage`` value; required) and optional ``label`` (shown instead of the name), ``kind``
  (``"parameter"`` / ``"dataflow"``), ``max_evals`` (the stage's budget), ``num_layers`` and
  ``space`` (the stage space's ``describe()``), and ``run_dir``: a run directory (absolute, or
  relative to this one) holding that stage's own log, for a stage that ran elsewhere (a finished
  PS run named as model A). A stage is listed even before it starts, so a report drawn mid-run
  shows it with 0 evaluations.

Which records belong to a stage: with ``run_dir``, that directory's log; else this log's records
whose ``meta.stage`` is the stage's name — except that when no record of this log names a stage
and exactly one listed stage has no ``run_dir``, that stage has the whole log. Without
``stages`` in meta.json, the stages are the distinct ``meta.stage`` values in order of first
appearance; a run with fewer than two stages is drawn as a plain run. Evaluations are numbered
across the stages in stage order (stage 1: 1 … n_1, stage 2: n_1 + 1 …), which for one log is
its line order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evomerge.runs.store import RunStore
from evomerge.runs.summary import best_record


@dataclass
class Stage:
    name: str
    records: list[dict[str, Any]]
    label: str = ""
    kind: str | None = None
    max_evals: int | None = None
    num_layers: int | None = None
    space: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def best(self) -> dict[str, Any] | None:
        return best_record(self.records)


def record_stage(record: dict[str, Any]) -> str | None:
    stage = (record.get("meta") or {}).get("stage") if isinstance(record.get("meta"), dict) else None
    return stage if isinstance(stage, str) and stage else None


def read_stages(root: Path, meta: dict[str, Any], records: list[dict[str, Any]]) -> list[Stage]:
    """The run's stages by the module's contract; ``[]`` for a one-stage run."""
    listed = meta.get("stages")
    if isinstance(listed, list) and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in listed):
        stages = _listed(root, listed, records)
    else:
        names = list(dict.fromkeys(s for s in map(record_stage, records) if s))
        stages = [Stage(n, [r for r in records if record_stage(r) == n]) for n in names]
    return stages if len(stages) >= 2 else []


def _listed(root: Path, listed: list[dict], records: list[dict]) -> list[Stage]:
    untagged = not any(record_stage(r) for r in records)
    local = [s for s in listed if not s.get("run_dir")]
    out = []
    for s in listed:
        notes: list[str] = []
        if s.get("run_dir"):
            where = Path(str(s["run_dir"]))
            where = where if where.is_absolute() else root / where
            recs = RunStore(where).read_log()
            if not recs:
                notes.append(f"no evaluations found in {where}")
        elif untagged and len(local) == 1:
            recs = list(records)
        else:
            recs = [r for r in records if record_stage(r) == s["name"]]
        out.append(
            Stage(
                name=s["name"],
                records=recs,
                label=str(s.get("label") or ""),
                kind=s.get("kind") if isinstance(s.get("kind"), str) else None,
                max_evals=s.get("max_evals") if isinstance(s.get("max_evals"), int) else None,
                num_layers=s.get("num_layers") if isinstance(s.get("num_layers"), int) else None,
                space=s.get("space") if isinstance(s.get("space"), dict) else None,
                notes=notes,
            )
        )
    return out
