"""Runs in stages: the sequential PS+DFS of Akiba et al. (2024), over one run directory and one log.

``space: {kind: psdfs, mode: sequential, …}`` with ``budget.stages: {ps: N, dfs: M}`` runs

1. **ps** — a parameter-space search (the section's PS options; ``driver``), ``N`` evaluations;
2. **dfs** — a data-flow search (the section's DFS options; the same ``driver``, seeded
   ``derive_seed(run.seed, 1)``) over model A — the ps stage's best candidate, nested in every
   recipe as source ``merged`` (:func:`evomerge.space.combined.dfs_over_merge`) — and the other
   experts, ``M`` evaluations. Its first candidate is A's identity path (the space's ``x0``, the
   paper's initialisation; :class:`~evomerge.runs.stage_driver.StageDriver`), which scores exactly
   what the PS winner scored, so the stage starts at the PS score; the driver starts from x0 too.

With ``space.model_a: {run_dir, candidate?}`` model A is a finished run's best (or that candidate)
and this run is the dfs stage alone (``budget.max_evals``); meta.json names that run as the ps
stage's ``run_dir``. ``budget.time_limit`` spans the stages; a stage that stops for any reason but
its budget (``time_limit``, ``target``, Ctrl-C) ends the run.

Each stage is a :class:`~evomerge.runs.plan.Plan` of its own (space, driver, budget; the problem's
objectives and worker are shared) searched by one :class:`~evomerge.runs.session.Session` over the
run directory's log. What the run directory holds about the stages, all of it data:

* records: ``meta.stage`` (``"ps"`` / ``"dfs"``), the stages one after another in the log; ids
  continue across stages (the dfs stage's start at 1 + the ps stage's largest);
* ``meta.json`` ``stages``: the report's contract (:mod:`evomerge.report.stages`: name, label,
  kind, max_evals, num_layers, space; ``run_dir`` for a ps stage that ran elsewhere), listed from
  the start; the dfs entry gets ``model_a: {stage: "ps" | run_dir, id, recipe}`` once it is known;
* each checkpoint's ``stage`` entry: ``{name, index, log_start, id_offset, identity, model_a: {id,
  recipe}}``; its ``n_told`` counts the earlier stages' records too (``log_start``), so checkpoint
  numbers grow across the boundary. A stage's first checkpoint is written before its first
  evaluation (the boundary).

**Resume** continues the checkpoint's stage (none: the first): its replay is that stage's records
after the checkpoint; a later stage starts from a fresh driver whose replay is all of its records
(a fallback to an older checkpoint replays a finished stage, then the next). Model A is the ps
stage's best in the log (checked against meta.json and the checkpoint), or the recorded
``model_a`` of a finished run; the candidate ids, ``log_start`` and model A of the checkpoint must
match the log's, else the checkpoint and the log do not belong together (``RunDirError``). With
the in-process backend the finished log equals an uninterrupted run's, wherever it was killed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evomerge.config import RunConfig, parse_config
from evomerge.errors import ConfigError, RunDirError
from evomerge.runs.crash import maybe_crash
from evomerge.runs.plan import Plan, build_plan
from evomerge.runs.problem import describe_space
from evomerge.runs.records import known_from_record
from evomerge.runs.session import Segment, Session
from evomerge.runs.stage_driver import StageDriver
from evomerge.runs.store import RunStore
from evomerge.runs.summary import best_record
from evomerge.scheduler import Replay

PS, DFS = "ps", "dfs"
LABELS = {PS: "PS", DFS: "DFS"}


def staged(cfg: RunConfig) -> bool:
    """True for a config that runs in stages (``space: {kind: psdfs, mode: sequential}``)."""
    return getattr(cfg.space, "kind", None) == "psdfs" and getattr(cfg.space, "mode", None) == "sequential"


def record_stage(record: dict[str, Any]) -> str | None:
    meta = record.get("meta")
    return meta.get("stage") if isinstance(meta, dict) else None


@dataclass
class Stage:
    """One stage: ``build(model_a)`` is its plan (``model_a``: ``{id, recipe}`` of model A, or
    ``None`` for the ps stage); ``identity``: it starts with its space's ``x0``."""

    name: str
    budget: int | None
    build: Callable[[dict[str, Any] | None], Plan]
    identity: bool = False


@dataclass
class StagedPlan:
    """The plan of a staged run, built and checked before the run directory is touched.

    ``problem``: the ps stage's problem with meta.json's ``stages`` (the objectives, the worker
    and held-out validation are every stage's); ``stages``: the stages this run executes;
    ``model_a``: model A from a finished run (``{run_dir, id, recipe}``), else ``None``."""

    cfg: RunConfig
    problem: Any
    stages: list[Stage]
    model_a: dict[str, Any] | None = None


def build_run_plan(
    cfg: RunConfig,
    *,
    source: str = "config",
    config_dir: str | Path | None = None,
    log=None,
    store: RunStore | None = None,
) -> Plan | StagedPlan:
    """:func:`~evomerge.runs.plan.build_plan`, or for a staged config its :class:`StagedPlan`.
    ``store``: the run directory being resumed (its meta.json's recorded model A is used)."""
    if not staged(cfg):
        return build_plan(cfg, source=source, config_dir=config_dir, log=log)
    return build_staged_plan(cfg, source=source, config_dir=config_dir, log=log, store=store)


def build_staged_plan(
    cfg: RunConfig, *, source: str, config_dir: str | Path | None, log=None, store: RunStore | None = None
) -> StagedPlan:
    from evomerge.drivers import build_driver
    from evomerge.drivers.base import derive_seed
    from evomerge.space import JointSpace, SpaceInputs
    from evomerge.space.combined import dfs_over_merge

    opts, budgets = cfg.space, cfg.budget.stages
    ps_space = {"kind": "parameter", **JointSpace.ps_options(opts)}
    ps_plan = build_plan(
        _stage_config(cfg, ps_space, budgets.ps if budgets else None), source=source, config_dir=config_dir, log=log
    )
    problem = ps_plan.problem
    models, num_layers = problem.models, int(problem.meta["num_layers"])
    inputs = SpaceInputs(models["base"], models["experts"], num_layers, cfg.run.seed, cfg.evaluator.dtype, source)
    dfs_cfg = _stage_config(cfg, ps_space, budgets.dfs if budgets else cfg.budget.max_evals)
    section = cfg.driver.model_copy(update={"options": problem.driver_options(cfg.driver.options)})

    def dfs_plan(model_a: dict[str, Any] | None) -> Plan:
        space = dfs_over_merge(opts, inputs, model_a["recipe"])
        stage_problem = replace(problem, space=space, meta={**problem.meta, "space": describe_space(space)})

        def make_driver():
            return build_driver(section, space, n_objectives=len(problem.objectives), seed=derive_seed(cfg.run.seed, 1))

        return Plan(dfs_cfg, stage_problem, ps_plan.target, make_driver, ps_plan.make_backend)

    external = None
    if opts.model_a is not None:
        external = _recorded_model_a(store) or _finished_run_model_a(opts.model_a, source, config_dir, num_layers)
    # the dfs stage over model A (a placeholder: the PS space's x0) is built now: its errors come first
    dfs = dfs_plan(external or {"recipe": problem.space.to_recipe(problem.space.x0)})
    dfs.make_driver()
    ps_desc = describe_space(problem.space)
    dfs_entry = _entry(DFS, "dataflow", dfs_cfg.budget.max_evals, num_layers, describe_space(dfs.problem.space))
    if external is None:
        stages = [Stage(PS, budgets.ps, lambda _: ps_plan), Stage(DFS, budgets.dfs, dfs_plan, identity=True)]
        ps_entry = _entry(PS, "parameter", budgets.ps, num_layers, ps_desc)
    else:
        stages = [Stage(DFS, cfg.budget.max_evals, dfs_plan, identity=True)]
        ps_entry = {**_external_entry(external["run_dir"]), "name": PS, "label": LABELS[PS], "kind": "parameter"}
        ps_entry["run_dir"] = external["run_dir"]
        dfs_entry["model_a"] = external
    meta = {
        **problem.meta,
        "space": {"kind": "psdfs", "mode": "sequential", "ps": ps_entry.get("space"), "dfs": dfs_entry["space"]},
        "stages": [ps_entry, dfs_entry],
    }
    return StagedPlan(cfg, replace(problem, meta=meta), stages, external)


def _stage_config(cfg: RunConfig, space: dict[str, Any], max_evals: int | None) -> RunConfig:
    """``cfg`` with a stage's ``space`` section and budget (the stages' split dropped)."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    data["space"] = space
    data["budget"] = {k: v for k, v in data["budget"].items() if k != "stages"}
    if max_evals is not None:
        data["budget"]["max_evals"] = max_evals
    return parse_config(data, "stage config")


def _entry(name: str, kind: str, budget: int | None, num_layers: int, space: dict) -> dict[str, Any]:
    out = {"name": name, "label": LABELS[name], "kind": kind, "num_layers": num_layers, "space": space}
    if budget is not None:
        out["max_evals"] = budget
    return out


def _external_entry(run_dir: str) -> dict[str, Any]:
    """What meta.json says of the finished run's space and layers (for the report), if it can."""
    try:
        meta = RunStore(run_dir).read_json(Path(run_dir) / "meta.json") or {}
    except RunDirError:
        return {}
    return {k: meta[k] for k in ("space", "num_layers") if k in meta}


def _recorded_model_a(store: RunStore | None) -> dict[str, Any] | None:
    """The dfs stage's ``model_a`` recorded in a resumed run's meta.json (``None``: none)."""
    if store is None:
        return None
    meta = store.read_json(store.root / "meta.json") or {}
    entry = next((s for s in meta.get("stages") or [] if isinstance(s, dict) and s.get("name") == DFS), {})
    found = entry.get("model_a")
    return found if isinstance(found, dict) and isinstance(found.get("recipe"), dict) else None


def _finished_run_model_a(model_a, source: str, config_dir, num_layers: int) -> dict[str, Any]:
    """Model A from a finished run: its best candidate (or ``model_a.candidate``), checked."""
    where = Path(model_a.run_dir).expanduser()
    if not where.is_absolute() and config_dir is not None and (Path(config_dir) / where).is_dir():
        where = Path(config_dir) / where  # like model paths: the config's folder first, then the working dir
    key = f"{source}: space.model_a.run_dir"
    other = RunStore(where)
    try:
        other.require()
        records = other.read_log()
    except RunDirError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if model_a.candidate is None:
        rec = best_record(records)
        if rec is None:
            raise ConfigError(f"{key}: {where} has no successful evaluation to be model A")
    else:
        rec = next((r for r in records if r.get("id") == model_a.candidate), None)
        if rec is None or rec.get("status") != "ok":
            why = "has no candidate" if rec is None else "holds a failed candidate"
            raise ConfigError(f"{source}: space.model_a.candidate: {where} {why} {model_a.candidate}")
    recipe = rec.get("recipe")
    if not isinstance(recipe, dict) or recipe.get("merge_method") == "dataflow":
        raise ConfigError(
            f"{key}: candidate {rec['id']} of {where} is not a parameter-space recipe (model A of PS+DFS is a merge "
            f"of the experts' weights)"
        )
    other_layers = _external_entry(str(where)).get("num_layers")
    if isinstance(other_layers, int) and other_layers != num_layers:
        raise ConfigError(f"{key}: {where} merged models of {other_layers} layers, this run's have {num_layers}")
    return {"run_dir": str(where.resolve()), "id": int(rec["id"]), "recipe": recipe}


# -- the search -----------------------------------------------------------------------------------
def search_stages(
    plan: StagedPlan,
    store: RunStore,
    records: list[dict],
    state: dict | None,
    *,
    restore: Callable,
    warn=None,
    progress: bool = True,
    fingerprint: dict[str, str] | None = None,
    attempts=None,
) -> None:
    """Search ``plan``'s stages, from checkpoint ``state`` (``None``: the start) and the log's
    ``records``; every stage's checkpoints carry the run's ``fingerprint`` and share its
    ``attempts`` (:class:`evomerge.runs.attempts.Attempts`, read from ``attempts.json`` on resume). ``restore(driver, state, store, records, warn) -> (n_told, elapsed, in_flight)``
    loads a checkpoint into a fresh driver (:func:`evomerge.runs.api.restore_driver`)."""
    warn = warn or (lambda m: print(m, file=sys.stderr))
    records = list(records)
    first = _first_stage(plan, state, store)
    elapsed = 0.0
    for k in range(first, len(plan.stages)):
        stage = plan.stages[k]
        earlier = {s.name for s in plan.stages[:k]}
        log_start = _log_start(records, earlier, store)
        model_a = _model_a(plan, stage, records[:log_start], store)
        stage_plan = stage.build(model_a)
        offset = 1 + max((int(r["id"]) for r in records[:log_start]), default=-1)
        identity = stage_plan.problem.space.x0 if stage.identity else None
        driver = StageDriver(stage_plan.make_driver(), stage=stage.name, offset=offset, identity=identity)
        position = {"name": stage.name, "index": k, "log_start": log_start, "id_offset": offset}
        if model_a is not None:
            position["model_a"] = {"id": model_a["id"], "recipe": model_a["recipe"]}
        resumed = state if k == first else None
        if resumed is not None:
            _check_position(resumed.get("stage"), position, store)
            driver.restore_identity(resumed["stage"].get("identity", "none"))
            told, elapsed, in_flight = restore(driver, resumed, store, records, warn)
        else:
            told, in_flight = log_start, []
        replay = Replay(known_from_record(store, r) for r in records[told:] if record_stage(r) == stage.name)
        segment = Segment(
            log_start=log_start,
            stage=lambda position=position, driver=driver: {**position, "identity": driver.identity},
            progress={"max_evals": plan.cfg.budget.max_evals, "stage": stage.name, "stage_max_evals": stage.budget},
            last=k == len(plan.stages) - 1,
            label=f"stage {LABELS[stage.name]}",
        )
        session = Session(
            stage_plan, store, records, told, elapsed, segment, fingerprint=fingerprint, attempts=attempts
        )
        if k == first:
            session.refresh_outputs()
        if resumed is None and model_a is not None:
            _record_model_a(store, plan, model_a)
        if resumed is None and (k > 0 or model_a is not None):
            maybe_crash("stage-start")
            session.checkpoint(driver, [])  # the boundary: the stage, its model A and a fresh driver
        summary = session.search(driver, replay, in_flight=in_flight, progress=progress)
        records, elapsed = session.records, session.elapsed()
        if not segment.last and summary.stop_reason not in ("max_evals", "driver_exhausted"):
            session.validate_on(None)  # stopped early (time limit, target, Ctrl-C): the run ends here
            session.write_progress("finished", stop_reason=summary.stop_reason)
            return


def _first_stage(plan: StagedPlan, state: dict | None, store: RunStore) -> int:
    if state is None:
        return 0
    entry = state.get("stage")
    if not isinstance(entry, dict):
        raise RunDirError(f"{store.root}: the checkpoint has no stage entry, but the config runs in stages")
    index = entry.get("index")
    if not isinstance(index, int) or not 0 <= index < len(plan.stages) or plan.stages[index].name != entry.get("name"):
        names = [s.name for s in plan.stages]
        raise RunDirError(
            f"{store.root}: the checkpoint was written in stage {entry.get('name')!r} (index {index}), which is not a "
            f"stage of this config ({', '.join(names)})"
        )
    return index


def _log_start(records: list[dict], earlier: set[str], store: RunStore) -> int:
    """How many records the earlier stages hold; they must come first in the log."""
    n = sum(1 for r in records if record_stage(r) in earlier)
    late = next((i for i, r in enumerate(records[:n]) if record_stage(r) not in earlier), None)
    if late is not None:
        raise RunDirError(
            f"{store.log_path}: line {late + 1} (candidate {records[late]['id']}, stage {record_stage(records[late])!r}) "
            f"comes before the end of stage(s) {', '.join(sorted(earlier))}; the stages must follow one another"
        )
    return n


def _model_a(plan: StagedPlan, stage: Stage, earlier: list[dict], store: RunStore) -> dict[str, Any] | None:
    """Model A of ``stage`` (``{id, recipe, …}``): the recorded finished run's, or the ps stage's best."""
    if not stage.identity:
        return None
    if plan.model_a is not None:
        return plan.model_a
    best = best_record([r for r in earlier if record_stage(r) == PS])
    if best is None:
        raise RunDirError(
            f"{store.root}: the ps stage has no successful evaluation, so the dfs stage has no model A "
            f"(see the errors in {store.log_path.name})"
        )
    found = {"stage": PS, "id": int(best["id"]), "recipe": best["recipe"]}
    recorded = _recorded_model_a(store)
    if recorded is not None and recorded.get("id") != found["id"]:
        raise RunDirError(
            f"{store.root}: meta.json records candidate {recorded.get('id')} as model A, but the ps stage's best in "
            f"{store.log_path.name} is candidate {found['id']}; the log was changed"
        )
    return found


def _record_model_a(store: RunStore, plan: StagedPlan, model_a: dict[str, Any]) -> None:
    """meta.json's dfs entry gets ``model_a`` (before the stage's first evaluation)."""
    meta = store.read_json(store.root / "meta.json") or dict(plan.problem.meta)
    for entry in meta.get("stages") or []:
        if isinstance(entry, dict) and entry.get("name") == DFS:
            entry["model_a"] = model_a
    store.write_json(store.root / "meta.json", meta)


def _check_position(entry: dict, position: dict[str, Any], store: RunStore) -> None:
    for key in ("log_start", "id_offset"):
        if entry.get(key) != position[key]:
            raise RunDirError(
                f"{store.root}: the checkpoint of stage {position['name']!r} has {key} {entry.get(key)}, but the log "
                f"gives {position[key]}; the checkpoint and the log do not belong together"
            )
    ours, theirs = position.get("model_a"), entry.get("model_a")
    if (ours or {}).get("id") != (theirs or {}).get("id"):
        raise RunDirError(
            f"{store.root}: the checkpoint of stage {position['name']!r} was written with model A = candidate "
            f"{(theirs or {}).get('id')}, but the log's is candidate {(ours or {}).get('id')}; the checkpoint and the log "
            f"do not belong together"
        )


__all__ = ["DFS", "PS", "Stage", "StagedPlan", "build_run_plan", "build_staged_plan", "search_stages", "staged"]
