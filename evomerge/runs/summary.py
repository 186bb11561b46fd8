"""What ``evomerge status`` reports, computed from the run directory alone (no models loaded).

- ``evaluations`` / ``failed``: log lines, and those whose status is not ``ok``;
- ``best``: the ok candidate with the highest scalarised score (``score`` in its log line:
  Σ_k w_k · s_k · v_k with s_k = +1 to maximise and −1 to minimise objective k), its raw objective
  values, and ``validation`` — its scores on the held-out split, from ``validation.json`` when that
  cache is about this candidate (``None`` until computed: at the end of a run, or ``status
  --validate``);
- ``pareto_size``: the number of non-dominated ok candidates (on the maximised ``values``);
- ``throughput``: evaluations per hour between the first start and the last finish in the log;
- ``stages`` (a run in stages, :mod:`evomerge.runs.stages`: meta.json lists ``stages``): per stage
  its name, label, evaluations (records whose ``meta.stage`` names it), ``max_evals``, best
  (``{id, objectives}``) and ``run_dir`` (a stage that ran in another run directory).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evomerge.pareto import nondominated
from evomerge.runs.store import RunStore, as_float


def ok_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok" and r.get("score") is not None]


def best_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest score; ties go to the earliest candidate (a later equal one is no improvement)."""
    best = None
    for r in ok_records(records):
        if best is None or as_float(r["score"]) > as_float(best["score"]):
            best = r
    return best


def pareto_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ok = [r for r in ok_records(records) if r.get("values") is not None]
    if not ok:
        return []
    vals = np.array([[as_float(v) for v in r["values"]] for r in ok], dtype=float)
    finite = np.all(np.isfinite(vals), axis=1)
    ok = [r for r, f in zip(ok, finite) if f]
    vals = vals[finite]
    return [ok[i] for i in nondominated(vals)]


def summarize(store: RunStore, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    records = store.read_log() if records is None else records
    best = best_record(records)
    validation = None
    cached = store.read_json(store.validation_path)
    if best is not None and cached and cached.get("id") == best["id"]:
        validation = cached.get("objectives")
    starts = [r["started"] for r in records if isinstance(r.get("started"), (int, float))]
    ends = [r["finished"] for r in records if isinstance(r.get("finished"), (int, float))]
    span = (max(ends) - min(starts)) if starts and ends else 0.0
    progress = store.read_json(store.root / "progress.json") or {}
    out = {
        "run_dir": str(store.root),
        "evaluations": len(records),
        "failed": sum(1 for r in records if r.get("status") != "ok"),
        "best": None
        if best is None
        else {
            "id": best["id"],
            "objectives": best.get("objectives"),
            "score": best.get("score"),
            "validation": validation,
        },
        "pareto_size": len(pareto_records(records)),
        "throughput_per_hour": (len(records) / span * 3600.0) if span > 0 else None,
        "wall_seconds": span,
        "state": progress.get("state", "unknown"),
        "max_evals": progress.get("max_evals"),
    }
    meta = store.read_json(store.root / "meta.json")
    if isinstance(meta, dict) and isinstance(meta.get("stages"), list):
        out["stages"] = stage_summaries(meta["stages"], records)
    return out


def stage_summaries(stages: list[Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each stage of meta.json's ``stages`` with its records' count and best."""
    out = []
    for entry in stages:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        mine = [r for r in records if isinstance(r.get("meta"), dict) and r["meta"].get("stage") == entry["name"]]
        best = best_record(mine)
        out.append(
            {
                "name": entry["name"],
                "label": str(entry.get("label") or entry["name"]),
                "evaluations": len(mine),
                "max_evals": entry.get("max_evals"),
                "best": None if best is None else {"id": best["id"], "objectives": best.get("objectives")},
                "run_dir": entry.get("run_dir"),
            }
        )
    return out


def format_status(s: dict[str, Any]) -> str:
    lines = [f"run        {s['run_dir']}  ({s['state']})"]
    total = f" / {s['max_evals']}" if s.get("max_evals") else ""
    lines.append(f"evaluated  {s['evaluations']}{total}  ({s['failed']} failed)")
    if s["best"] is None:
        lines.append("best       none yet")
    else:
        b = s["best"]
        objs = ", ".join(f"{k}={_fmt(v)}" for k, v in (b["objectives"] or {}).items())
        lines.append(f"best       #{b['id']}  {objs}")
        if b.get("validation"):
            vals = ", ".join(f"{k}={_fmt(v)}" for k, v in b["validation"].items())
            lines.append(f"held-out   {vals}")
        else:
            lines.append("held-out   not computed (run `evomerge status --validate`)")
    for st in s.get("stages") or []:
        if st["run_dir"] and not st["evaluations"]:
            lines.append(f"stage {st['label']:<4} in {st['run_dir']}")
            continue
        total = f" / {st['max_evals']}" if st.get("max_evals") else ""
        best = st["best"]
        objs = "" if best is None else ", ".join(f"{k}={_fmt(v)}" for k, v in (best["objectives"] or {}).items())
        lines.append(
            f"stage {st['label']:<4} {st['evaluations']}{total}"
            + ("" if best is None else f"  best #{best['id']}  {objs}")
        )
    lines.append(f"pareto     {s['pareto_size']} non-dominated")
    if s.get("throughput_per_hour"):
        lines.append(f"speed      {s['throughput_per_hour']:.1f} evaluations/hour over {s['wall_seconds']:.0f} s")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)
