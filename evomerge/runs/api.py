"""``run``, ``resume`` and ``validate_best``: what the CLI calls.

Order of work in :func:`run`: the cheap refusals (a run directory that holds a run, an unreachable
Ray cluster) → the plan (:func:`evomerge.runs.stages.build_run_plan`: every check that needs no
evaluation; a staged run's plan is a :class:`~evomerge.runs.stages.StagedPlan`) → only then create the run directory, take its lock, write the resolved config and
``meta.json`` → the search (:class:`evomerge.runs.session.Session`). A user error therefore never
leaves a run directory behind.

:func:`resume` restores the newest readable checkpoint into a fresh driver (falling back to the
previous one, or to the start, when it is unreadable), reads the log, and hands the scheduler
(:class:`~evomerge.scheduler.ResumePoint`) what it needs to continue exactly: the candidates that
were in flight when the checkpoint was written, which it takes back before asking for new ones,
and the records the checkpoint has not told yet, which are told from the log instead of being
evaluated again (:mod:`evomerge.scheduler.replay`). No candidate is lost or evaluated twice, on any
backend; with the in-process backend and a seed the finished log equals that of an uninterrupted
run, record for record, apart from :data:`evomerge.runs.store.VOLATILE_FIELDS`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from evomerge.config import RunConfig, parse_config
from evomerge.errors import RunDirError
from evomerge.io.oserrors import wrap
from evomerge.runs.lock import RunLock
from evomerge.runs.plan import Plan
from evomerge.runs.records import known_from_record
from evomerge.runs.session import Session, set_rng_state, validate_record
from evomerge.runs.stages import StagedPlan, build_run_plan, search_stages
from evomerge.runs.store import RunStore
from evomerge.runs.summary import best_record, summarize
from evomerge.scheduler import Replay
from evomerge.validation import parse_yaml


def run(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    config_path: str | Path | None = None,
    progress: bool = True,
    plan: Plan | StagedPlan | None = None,
) -> dict[str, Any]:
    """Start a fresh run in ``run_dir`` (which must not hold one). Returns the status summary."""
    source = str(config_path) if config_path else "config"
    config_dir = Path(config_path).resolve().parent if config_path else None
    store = RunStore(run_dir)
    store.check_fresh()  # cheap refusals first: before the plan loads models and tasks
    if cfg.evaluator.backend == "ray" and cfg.evaluator.address:
        from evomerge.evaluator.ray_connect import check_reachable

        check_reachable(cfg.evaluator.address)  # an unreachable cluster must not leave a run dir behind
    plan = plan or build_run_plan(cfg, source=source, config_dir=config_dir)
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise wrap(exc, path=run_dir, doing="creating the run directory") from None
    with RunLock(run_dir):
        store.create(resolved_yaml(plan.cfg, config_dir))
        store.write_json(store.root / "meta.json", plan.problem.meta)
        try:
            if isinstance(plan, StagedPlan):
                search_stages(plan, store, [], None, restore=restore_driver, progress=progress)
            else:
                Session(plan, store, [], 0, 0.0).search(plan.make_driver(), Replay(), progress=progress)
        finally:
            store.close()
        return summarize(store)


def resolved_yaml(cfg: RunConfig, config_dir: Path | None) -> str:
    """The run directory's ``config.yaml``: ``cfg`` in full, plus where relative task paths resolve."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    if cfg.fitness is not None and config_dir is not None:
        data.setdefault("fitness", {})
        data["_base_dir"] = str(config_dir)  # relative task paths keep resolving against the config's folder
    return yaml.safe_dump(data, sort_keys=False)


def load_run_config(store: RunStore) -> tuple[RunConfig, Path | None]:
    data = parse_yaml(store.config_path.read_text(), str(store.config_path), error=RunDirError) or {}
    if not isinstance(data, dict):
        raise RunDirError(f"{store.config_path}: expected a mapping of config sections, got {type(data).__name__}")
    base_dir = data.pop("_base_dir", None)
    return parse_config(data, str(store.config_path)), (Path(base_dir) if base_dir else None)


def resume(run_dir: str | Path, *, progress: bool = True, warn=None) -> dict[str, Any]:
    """Continue ``run_dir`` from its newest readable checkpoint and its log; see the module docstring."""
    warn = warn or (lambda m: print(m, file=sys.stderr))
    store = RunStore(run_dir)
    store.require()
    cfg, base_dir = load_run_config(store)
    plan = build_run_plan(cfg, source=str(store.config_path), config_dir=base_dir, store=store)
    with RunLock(run_dir):
        records = store.read_log(repair=True, warn=warn)
        ckpts = store.checkpoints(cfg.run.keep_checkpoints)
        ckpts.remove_temporaries()
        loaded = ckpts.load_latest(log=warn)
        if loaded is None and ckpts.list():
            warn(f"warning: no readable checkpoint in {ckpts.path}; replaying the whole log from the start")
        state = None if loaded is None else loaded[1]
        try:
            if isinstance(plan, StagedPlan):
                search_stages(plan, store, records, state, restore=restore_driver, warn=warn, progress=progress)
            else:
                driver = plan.make_driver()
                told, elapsed, in_flight = restore_driver(driver, state, store, records, warn)
                replay = Replay(known_from_record(store, r) for r in records[told:])
                session = Session(plan, store, records, told, elapsed)
                session.refresh_outputs()
                session.search(driver, replay, in_flight=in_flight, progress=progress)
        finally:
            store.close()
        return summarize(store)


def restore_driver(driver, state: dict | None, store: RunStore, records: list[dict], warn) -> tuple[int, float, list]:
    """Load checkpoint ``state`` (``None``: no readable one) into a fresh ``driver`` and the global
    RNGs; returns ``(n_told, elapsed, in_flight)`` (``(0, 0.0, [])`` without a checkpoint)."""
    if state is None:
        return 0, 0.0, []
    driver.load_state_dict(state["driver"])
    told = int(state["n_told"])
    in_flight = list(state.get("in_flight") or [])
    _check_in_flight(driver, in_flight, warn)
    set_rng_state(state.get("rng"))
    if told > len(records):
        raise RunDirError(
            f"{store.root}: the checkpoint has told {told} evaluations but {store.log_path.name} holds only {len(records)}; the log was truncated"
        )
    return told, float(state.get("elapsed", 0.0)), in_flight


def _check_in_flight(driver, in_flight: list, warn) -> None:
    """A driver that lists its pending candidates must hold exactly the checkpoint's in-flight
    ones; a checkpoint written before in-flight candidates were recorded cannot bring them back."""
    pending = getattr(driver, "pending_ids", None)
    if pending is None:
        return
    missing = sorted(set(int(i) for i in pending) - {int(f["id"]) for f in in_flight})
    if missing:
        warn(
            f"warning: the checkpoint does not record candidate(s) {', '.join(map(str, missing[:10]))} that were in flight "
            f"when it was written (an older evomerge wrote it); they are not evaluated again"
        )


def validate_best(run_dir: str | Path) -> dict | None:
    """``status --validate``: score the best candidate on the held-out split and cache it."""
    store = RunStore(run_dir)
    store.require()
    best = best_record(store.read_log())
    if best is None:
        return None
    cached = store.read_json(store.validation_path)
    if cached and cached.get("id") == best["id"]:
        return cached
    cfg, base_dir = load_run_config(store)
    plan = build_run_plan(cfg, source=str(store.config_path), config_dir=base_dir, store=store)
    out = validate_record(plan.problem, store, best)
    store.write_validation(out)  # a cache: a failed write warns, the scores are still shown
    return out


__all__ = ["load_run_config", "resolved_yaml", "restore_driver", "resume", "run", "validate_best"]
