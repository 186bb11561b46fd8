"""``run``, ``resume`` and ``validate_best``: what the CLI calls.

Order of work in :func:`run`: the cheap refusals (a run directory that holds a run, a device this
machine lacks, Ray not installed or its cluster unreachable: :mod:`evomerge.runs.guard`) → the plan
(:func:`evomerge.runs.stages.build_run_plan`: every check that needs no evaluation; a staged
run's plan is a :class:`~evomerge.runs.stages.StagedPlan`) → only then create
the run directory, take its lock, write the resolved config and ``meta.json`` (with the run's
fingerprint: :mod:`evomerge.runs.fingerprint`) → the search (:class:`evomerge.runs.session.Session`).
A user error therefore never leaves a run directory behind, and a backend that fails to start
before any result is logged takes the directory back out (:func:`~evomerge.runs.guard.discard_new_run`).

:func:`resume` first refuses what it must not continue: a v1 pickle checkpoint, a config or models
changed since the run started (unless ``allow_config_change``). It then restores the newest
readable checkpoint into a fresh driver (falling back to the previous one, or to the start, when
one is unreadable — bad bytes or a malformed state), reads the log and ``attempts.json``
(:mod:`evomerge.runs.attempts`), and hands the scheduler
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

from evomerge.config import RunConfig, parse_config, with_overrides
from evomerge.errors import ConfigError, RunDirError
from evomerge.io.oserrors import wrap
from evomerge.merge import ENGINE
from evomerge.runs.attempts import Attempts
from evomerge.runs.checkpoint import RESTORE_ERRORS
from evomerge.runs.fingerprint import fingerprint, short
from evomerge.runs.guard import (
    HINT,
    change_message,
    check_environment,
    config_changed,
    discard_new_run,
    models_changed,
    refuse_changed,
)
from evomerge.runs.lock import RunLock
from evomerge.runs.plan import Plan
from evomerge.runs.records import known_from_record
from evomerge.runs.session import Session, parse_rng_state, validate_record
from evomerge.runs.stages import StagedPlan, build_run_plan, search_stages
from evomerge.runs.store import RunStore
from evomerge.runs.summary import best_record, summarize
from evomerge.scheduler import InFlight, Replay
from evomerge.state import Reader, StateError
from evomerge.validation import parse_yaml

META_NAME = "meta.json"


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
    check_environment(cfg, source)
    plan = plan or build_run_plan(cfg, source=source, config_dir=config_dir)
    text = resolved_yaml(plan.cfg, config_dir)
    fp = fingerprint(_parsed(text, str(store.config_path)), _models(plan))
    root = Path(run_dir)
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise wrap(exc, path=run_dir, doing="creating the run directory") from None
    with RunLock(run_dir):
        store.create(text)
        store.write_json(store.root / META_NAME, {**plan.problem.meta, "fingerprint": fp, "merge_engine": ENGINE})
        try:
            if isinstance(plan, StagedPlan):
                search_stages(plan, store, [], None, restore=restore_driver, progress=progress, fingerprint=short(fp))
            else:
                session = Session(plan, store, [], 0, 0.0, fingerprint=short(fp))
                session.search(plan.make_driver(), Replay(), progress=progress)
        except BaseException:
            store.close()
            if not store.read_log(warn=lambda m: None):  # no result yet: not a run, a failed start
                discard_new_run(store.root, created)
            raise
        finally:
            store.close()
        return summarize(store)


def resolved_yaml(cfg: RunConfig, config_dir: Path | None) -> str:
    """The run directory's ``config.yaml``: ``cfg`` in full, plus where relative task paths resolve."""
    return yaml.safe_dump(resolved_dict(cfg, config_dir), sort_keys=False)


def resolved_dict(cfg: RunConfig, config_dir: Path | None) -> dict[str, Any]:
    data = cfg.model_dump(mode="json", exclude_none=True)
    if cfg.fitness is not None and config_dir is not None:
        data.setdefault("fitness", {})
        data["_base_dir"] = str(config_dir)  # relative task paths keep resolving against the config's folder
    return data


def _parsed(text: str, source: str) -> dict[str, Any]:
    """The resolved mapping of a config.yaml text, as :func:`resume` will read it back."""
    data = dict(parse_yaml(text, source, error=RunDirError) or {})
    base_dir = data.pop("_base_dir", None)
    try:
        return resolved_dict(parse_config(data, source), Path(base_dir) if base_dir else None)
    except ConfigError:  # a staged config's resolved form does not parse as written (main's stages)
        return {**data, **({"_base_dir": base_dir} if base_dir else {})}


def _models(plan: Plan) -> dict[str, Any]:
    return dict(getattr(plan.problem, "models", None) or {})


def load_run_config(store: RunStore) -> tuple[RunConfig, Path | None]:
    data = parse_yaml(store.config_path.read_text(), str(store.config_path), error=RunDirError) or {}
    if not isinstance(data, dict):
        raise RunDirError(f"{store.config_path}: expected a mapping of config sections, got {type(data).__name__}")
    base_dir = data.pop("_base_dir", None)
    return parse_config(data, str(store.config_path)), (Path(base_dir) if base_dir else None)


def resume(
    run_dir: str | Path,
    *,
    progress: bool = True,
    warn=None,
    allow_config_change: bool = False,
    overrides: dict[str, Any] | None = None,
    plan: Plan | None = None,
) -> dict[str, Any]:
    """Continue ``run_dir`` from its newest readable checkpoint and its log; see the module docstring.

    ``overrides``: :func:`~evomerge.config.with_overrides` keys for this process only (the CLI's
    ``--eval-timeout``); ``plan``: a plan for the run's config built by the caller (tests)."""
    warn = warn or (lambda m: print(m, file=sys.stderr))
    store = RunStore(run_dir)
    store.require()
    cfg, base_dir = load_run_config(store)
    cfg = with_overrides(cfg, **(overrides or {}))
    name = store.config_path.name
    ckpts = store.checkpoints(cfg.run.keep_checkpoints)
    ckpts.refuse_legacy(store.log_path.name)
    meta = store.read_json(store.root / META_NAME)
    if meta is not None and not isinstance(meta, dict):
        raise RunDirError(f"{store.root / META_NAME}: expected a JSON object")
    resolved = resolved_dict(cfg, base_dir)
    changes = [f"{name}: {c}" for c in config_changed(meta, resolved)]
    if not allow_config_change:
        refuse_changed(changes)
    check_environment(cfg, str(store.config_path))
    plan = plan or build_run_plan(cfg, source=str(store.config_path), config_dir=base_dir, store=store)
    fp = fingerprint(resolved, _models(plan))
    changes += models_changed(meta, fp["models"])
    if not allow_config_change:
        refuse_changed(changes)
    with RunLock(run_dir):
        records = store.read_log(repair=True, warn=warn)
        ckpts.remove_temporaries()
        accepted = _accept(store, meta or {}, fp, changes, len(records), warn)
        attempts = Attempts(store.root)
        attempts.load((int(r["id"]) for r in records if isinstance(r.get("id"), int)), warn)
        try:
            if isinstance(plan, StagedPlan):  # each stage's driver is built by search_stages
                _resume_stages(
                    plan,
                    store,
                    ckpts,
                    records,
                    check=lambda state: _check_fingerprint(state, accepted, allow_config_change),
                    warn=warn,
                    progress=progress,
                    fingerprint=short(fp),
                    attempts=attempts,
                )
            else:
                loaded = ckpts.load_latest(
                    restore=lambda state: _restore(plan, state, accepted, allow_config_change), log=warn
                )
                if loaded is None and ckpts.list():
                    warn(f"warning: no readable checkpoint in {ckpts.path}; replaying the whole log from the start")
                driver, told, elapsed, in_flight = plan.make_driver(), 0, 0.0, []
                if loaded is not None:
                    _, (driver, told, in_flight, elapsed, apply_rng) = loaded
                    _check_told(told, store, records)
                    apply_rng()
                replay = Replay(known_from_record(store, r) for r in records[told:])
                session = Session(plan, store, records, told, elapsed, fingerprint=short(fp), attempts=attempts)
                session.refresh_outputs()
                session.search(driver, replay, in_flight=in_flight, progress=progress)
        finally:
            store.close()
        return summarize(store)


def _resume_stages(plan, store: RunStore, ckpts, records: list[dict], *, check, warn, **kwargs) -> None:
    """Resume a staged run from its newest checkpoint that the checkpoint's stage driver accepts:
    one found malformed there (before anything is written) is reported and the next older one
    taken, as a plain run's are; none left: the whole log is replayed from the start."""
    for _, path, state in ckpts.readable(restore=check, log=warn):
        try:
            search_stages(plan, store, records, state, restore=restore_driver, warn=warn, **kwargs)
            return
        except StateError as exc:
            ckpts.report_malformed(path, exc, warn)
    if ckpts.list():
        warn(f"warning: no readable checkpoint in {ckpts.path}; replaying the whole log from the start")
    search_stages(plan, store, records, None, restore=restore_driver, warn=warn, **kwargs)


def _check_told(told: int, store: RunStore, records: list[dict]) -> None:
    if told > len(records):
        raise RunDirError(
            f"{store.root}: the checkpoint has told {told} evaluations but {store.log_path.name} holds only "
            f"{len(records)}; the log was truncated"
        )


def restore_driver(driver, state: dict | None, store: RunStore, records: list[dict], warn) -> tuple[int, float, list]:
    """Load checkpoint ``state`` (``None``: no readable one) into a fresh ``driver`` (a staged run's
    stage driver) and the global RNGs; returns ``(n_told, elapsed, in_flight)`` (``(0, 0.0, [])``
    without a checkpoint). A malformed state raises :class:`StateError` before anything is
    written, so the caller can fall back to an older checkpoint."""
    if state is None:
        return 0, 0.0, []
    try:
        r = Reader(state, "checkpoint")
        driver.load_state_dict(r.get("driver"))
        told = r.int("n_told", low=0)
        in_flight = [InFlight.from_state(f, f"checkpoint.in_flight[{i}]") for i, f in enumerate(r.list("in_flight"))]
        _check_pending(driver, in_flight)
        apply_rng = parse_rng_state(r.get("rng"))
        elapsed = r.float("elapsed")
    except RESTORE_ERRORS as exc:
        raise StateError(str(exc) or type(exc).__name__) from None
    _check_told(told, store, records)
    apply_rng()
    return told, elapsed, in_flight


def _check_pending(driver, in_flight: list) -> None:
    pending = getattr(driver, "pending_ids", None)
    if pending is not None and sorted(int(i) for i in pending) != sorted(int(f.candidate.id) for f in in_flight):
        raise StateError(
            f"checkpoint.in_flight: candidates {sorted(int(f.candidate.id) for f in in_flight)} are not the "
            f"driver's pending {sorted(int(i) for i in pending)}"
        )


def _check_fingerprint(state: dict[str, Any], accepted: set[tuple[str, str]], allow: bool) -> dict[str, Any]:
    """``state``, unless its fingerprint is one meta.json does not record (and no ``allow``).
    A checkpoint without one (an empty section: written before fingerprints) is not checked."""
    fp = Reader(state, "checkpoint").sub("fingerprint")
    if not fp.data:
        return state
    pair = (fp.str("config_sha256"), fp.str("models_sha256"))
    if pair not in accepted and not allow:
        raise RunDirError(
            "the newest checkpoint was written with a config or models that meta.json does not record "
            f"(was meta.json edited?); {HINT}"
        )
    return state


def _accept(store: RunStore, meta: dict, fp: dict, changes: list[str], n_logged: int, warn) -> set[tuple[str, str]]:
    """Record the run's fingerprint in meta.json (adopting it for an older run directory, or, after
    ``--allow-config-change``, keeping the previous one in ``fingerprint_history``); returns every
    (config, models) hash pair a checkpoint of this run may carry."""
    old = meta.get("fingerprint")
    history = [h for h in meta.get("fingerprint_history") or [] if isinstance(h, dict)]
    engine = meta.get("merge_engine", 1)
    if engine != ENGINE:
        warn(
            f"warning: {store.root / META_NAME}: this run's candidates so far were merged by merge engine "
            f"{engine}, the ones from now on by engine {ENGINE} (DARE/DELLA masks, the L1 rescale and bf16 "
            "rounding differ: evomerge.merge.ENGINE); logged scores are kept as they are"
        )
        meta = {**meta, "merge_engine": ENGINE, "merge_engine_history": [*meta.get("merge_engine_history", []), engine]}
        store.write_json(store.root / META_NAME, meta)
    if not isinstance(old, dict):
        warn(
            f"warning: {store.root / META_NAME} records no fingerprint (an older evomerge wrote it); "
            "changes to the config or models before this resume cannot be detected"
        )
    elif changes:
        warn(f"warning: {change_message(changes, 'continuing (--allow-config-change)')}")
        history.append({**short(old), "replaced_after": n_logged, "changes": changes})
    if not isinstance(old, dict) or changes:
        store.write_json(store.root / META_NAME, {**meta, "fingerprint": fp, "fingerprint_history": history})
    pairs = {tuple(short(fp).values())} | {(str(h.get("config_sha256")), str(h.get("models_sha256"))) for h in history}
    if isinstance(old, dict):
        pairs.add(tuple(short(old).values()))
    return pairs


def _restore(plan: Plan, state: dict[str, Any], accepted: set[tuple[str, str]], allow: bool):
    """A checkpoint's state as (driver, n_told, in-flight candidates, elapsed, apply the RNG
    states); a malformed one raises :class:`StateError` (the caller falls back to an older one)."""
    _check_fingerprint(state, accepted, allow)
    r = Reader(state, "checkpoint")
    driver = plan.make_driver()
    driver.load_state_dict(r.get("driver"))
    told = r.int("n_told", low=0)
    in_flight = [InFlight.from_state(f, f"checkpoint.in_flight[{i}]") for i, f in enumerate(r.list("in_flight"))]
    _check_pending(driver, in_flight)
    return driver, told, in_flight, r.float("elapsed"), parse_rng_state(r.get("rng"))


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


__all__ = ["load_run_config", "resolved_dict", "resolved_yaml", "restore_driver", "resume", "run", "validate_best"]
