"""``run`` and ``resume``: a validated plan, a run directory, the scheduler, checkpoints.

Order of work in :func:`run`: build the plan (every check that needs no evaluation: config keys,
driver and method names, model paths, model compatibility from headers, non-empty calibration
splits) → only then create the run directory, take its lock, write the resolved config → start the
backend and the scheduler. A user error therefore never leaves a run directory behind.

Per new result (the scheduler's order): append its record to ``evaluations.jsonl`` (fsync) →
update best / Pareto files → the driver is told → ``on_tell`` checkpoints (every generation, or
every ``run.checkpoint_every`` evaluations).

:func:`resume` restores the newest readable checkpoint into a fresh driver (falling back to the
previous one, or to the start, when it is unreadable), reads the log, and hands the scheduler
(see :mod:`evomerge.scheduler.loop`, "Resume") what it needs to continue exactly: the candidates
that were in flight when the checkpoint was written (``in_flight``: asked, not yet told — on a
pool, or with a steady-state driver, there are usually some), which it takes back before asking
for new ones, and the records the checkpoint has not told yet (``known_results``), which are told
from the log instead of being evaluated again, interleaved with the asks as they were (each record
keeps ``asked``). No candidate is lost or evaluated twice, on any backend; with the in-process
backend and a seed the finished log equals that of an uninterrupted run, record for record, apart
from :data:`evomerge.runs.store.VOLATILE_FIELDS`.

The incumbent sent with each request for early stopping (``must_beat``) is the best score among
the *told* records — a prefix of the log — so it is the same at the same point of a resumed run.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from evomerge.config import RunConfig, load_config, parse_config
from evomerge.errors import ConfigError, ModelError, RunDirError
from evomerge.runs.lock import RunLock
from evomerge.runs.store import RunStore, as_float, to_jsonable
from evomerge.runs.summary import best_record, summarize
from evomerge.validation import parse_yaml

#: Genomes longer than this are stored beside the log (``genomes/<id>.npy``), not inline.
INLINE_GENOME_MAX = 4096


# ---------------------------------------------------------------------------------------------
# The plan: everything built and checked before the run directory is touched
# ---------------------------------------------------------------------------------------------
@dataclass
class Plan:
    cfg: RunConfig
    space: Any
    objectives: list  # evomerge.scheduler.ObjectiveSpec
    worker_spec: Any
    make_driver: Callable[[], Any]
    meta: dict[str, Any]
    early_stopping: bool = False
    per_example_tasks: list[str] | None = None
    per_example_sizes: dict[str, int] | None = None
    models: dict[str, Any] = field(default_factory=dict)  # {"base": path, "experts": {name: path}}
    world: Any = None
    problem: Any = None  # DigitsProblem for problem: digits

    def to_recipe(self, genome) -> dict[str, Any]:
        if self.cfg.problem == "digits":
            return {"genome": np.asarray(genome, dtype=np.float64).tolist()}
        from evomerge.scheduler import recipe_dict

        return recipe_dict(self.space.to_recipe(np.asarray(genome, dtype=np.float64)))


def _check_model_path(source: str, key: str, path: str | None) -> None:
    if path is None:
        return
    from evomerge.pool.resolve import looks_local

    if not Path(path).expanduser().exists() and looks_local(path):
        raise ModelError(f"{source}: {key}: model path '{path}' does not exist")


def _toyworld(cfg: RunConfig):
    from evomerge.toyworld import build_toyworld

    kwargs = {"preset": cfg.toyworld.preset, "seed": cfg.toyworld.seed, "log": lambda m: print(m, file=sys.stderr)}
    if cfg.toyworld.dir:
        kwargs["dir"] = cfg.toyworld.dir
    return build_toyworld(**kwargs)


def _world_fitness(world, objectives: list[str] | None = None) -> dict[str, Any]:
    """The world's own task configs; objectives = ``toyworld.objectives`` or its target task."""
    return world.fitness_config(list(objectives) if objectives else [world.target_task])


def build_plan(cfg: RunConfig, *, source: str = "config", config_dir: str | Path | None = None, log=None) -> Plan:
    """Validate ``cfg`` against the world (models, tasks, names) and build what the run needs."""
    from evomerge.drivers import build_driver
    from evomerge.scheduler import ObjectiveSpec
    from evomerge.space import build_space

    log = log or (lambda m: print(m, file=sys.stderr))
    if cfg.problem == "digits":
        return _digits_plan(cfg, source)

    world = None
    if cfg.toyworld is not None:
        world = _toyworld(cfg)
        base, experts = str(world.base), {k: str(v) for k, v in world.experts.items()}
        fitness_data = cfg.fitness or _world_fitness(world, cfg.toyworld.objectives)
    else:
        base, experts = cfg.models.base, dict(cfg.models.experts)
        _check_model_path(source, "models.base", base)
        for name, path in experts.items():
            _check_model_path(source, f"models.experts.{name}", path)
        fitness_data = cfg.fitness

    from evomerge.fitness import Fitness, parse_fitness_config

    fcfg = parse_fitness_config(fitness_data, where=f"{source} (fitness)", base_dir=config_dir)
    fit = Fitness(fcfg)  # reads every task's examples: a missing file or an empty split fails here
    for name, task in fit.tasks.items():
        if task.split_size("calibration") == 0:
            raise ConfigError(
                f"{source}: fitness task {name!r}: the calibration split is empty (the dataset has no examples for it)"
            )

    from evomerge.pool import ModelPool
    from evomerge.runs.worker import MergeWorkerSpec, objective_names

    # Headers only: architecture, tensor names and shapes of every model agree, before any merge.
    pool = ModelPool(base, list(experts.values()), device="cpu")
    space = build_space(
        cfg.space,
        base=base,
        experts=experts,
        num_layers=pool.num_layers,
        seed=cfg.run.seed,
        dtype=cfg.evaluator.dtype,
        source=source,
        tensor_names=pool.tensor_names,
    )
    names = objective_names(fcfg)
    objectives = [ObjectiveSpec(n, o.direction, float(o.weight)) for n, o in zip(names, fit.objectives)]

    def make():
        return build_driver(cfg.driver, space, n_objectives=len(objectives), seed=cfg.run.seed)

    make()  # unknown options, bad values: now, not after the run directory exists
    ev = cfg.evaluator
    if ev.backend == "inprocess":  # models that fit no placement: now (a Ray actor plans on its own GPU)
        from evomerge.dtypes import resolve_device, torch_dtype
        from evomerge.merge.placement import plan_for_pool

        device = resolve_device(ev.device)
        plan_for_pool(
            pool,
            device=device,
            dtype_bytes=torch_dtype(ev.dtype).itemsize,
            memory=ev.memory,
            search_cache=ev.search_cache,
        )
    spec = MergeWorkerSpec(
        base=base,
        experts=list(experts.values()),
        fitness=fcfg.model_dump(mode="json"),
        fitness_base_dir=str(config_dir) if config_dir else None,
        device=ev.device,
        dtype=ev.dtype,
        batch_size=ev.batch_size,
        memory=ev.memory,
        search_cache=ev.search_cache,
        early_stopping=bool(fcfg.early_stopping.enabled),
    )
    tasks = sorted(fit.tasks)
    meta = {
        "problem": "merge",
        "driver": cfg.driver.name,
        "objectives": [{"name": o.name, "direction": o.direction, "weight": o.weight} for o in objectives],
        "space": _describe(space),
        "num_layers": int(pool.num_layers),
        "models": {"base": base, "experts": experts},
        "target_task": getattr(world, "target_task", None),
        "expert_skills": dict(getattr(world, "expert_skills", {}) or {}),
    }
    return Plan(
        cfg=cfg,
        space=space,
        objectives=objectives,
        worker_spec=spec,
        make_driver=make,
        meta=meta,
        early_stopping=bool(fcfg.early_stopping.enabled),
        per_example_tasks=tasks,
        per_example_sizes={t: fit.tasks[t].split_size("calibration") for t in tasks},
        models={"base": base, "experts": experts},
        world=world,
    )


def _describe(space) -> dict:
    try:
        return to_jsonable(space.describe())
    except Exception:  # noqa: BLE001 - description is for reports only
        return {"kind": type(space).__name__}


# ---- the M2N2 digits problem: genomes are raw MLP weights ------------------------------------
def digits_evaluator(seed: int = 0):
    """Factory for a FunctionWorkerSpec: builds the world once, then scores genomes."""
    from evomerge.toyworld.digits import DigitsProblem

    problem = DigitsProblem(seed)

    def evaluate(recipe: dict):
        correct = problem.train_correct(np.asarray(recipe["genome"], dtype=np.float32))
        return {"train_accuracy": float(correct.mean())}, {"train": correct.astype(float).tolist()}

    return evaluate


def _digits_plan(cfg: RunConfig, source: str) -> Plan:
    from evomerge.drivers import build_driver
    from evomerge.evaluator import FunctionWorkerSpec
    from evomerge.scheduler import ObjectiveSpec
    from evomerge.toyworld.digits import DigitsProblem

    seed = cfg.run.seed if cfg.digits is None or cfg.digits.seed is None else cfg.digits.seed
    problem = DigitsProblem(seed)
    space = problem.space
    section = cfg.driver
    if getattr(section.options, "initial", None) == "experts":
        options = section.options.model_copy(update={"initial": [g.copy() for g in problem.experts]})
        section = section.model_copy(update={"options": options})

    def make():
        return build_driver(section, space, n_objectives=1, seed=cfg.run.seed)

    make()
    objectives = [ObjectiveSpec("train_accuracy", "maximize", 1.0)]
    spec = FunctionWorkerSpec("evomerge.runs.loop:digits_evaluator", kwargs={"seed": seed}, factory=True)
    meta = {
        "problem": "digits",
        "driver": cfg.driver.name,
        "objectives": [{"name": "train_accuracy", "direction": "maximize", "weight": 1.0}],
        "space": _describe(space),
        "num_layers": None,
    }
    return Plan(
        cfg=cfg,
        space=space,
        objectives=objectives,
        worker_spec=spec,
        make_driver=make,
        meta=meta,
        per_example_tasks=["train"],
        per_example_sizes={"train": problem.n_train},
        problem=problem,
    )


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
def make_record(plan: Plan, store: RunStore, candidate, result, *, recipe: dict | None) -> dict[str, Any]:
    genome = np.asarray(result.genome if result.genome is not None else candidate.genome, dtype=np.float64).reshape(-1)
    if genome.size > INLINE_GENOME_MAX:
        (store.root / "genomes").mkdir(exist_ok=True)
        rel = f"genomes/{candidate.id}.npy"
        np.save(store.root / rel, genome)
        genome_field: Any = {"path": rel}
        recipe = None  # the genome is the recipe
    else:
        genome_field = genome.tolist()
    values = score = None
    objectives = dict(result.objectives or {})
    if result.ok and all(o.name in objectives for o in plan.objectives):
        signed = [o.sign * float(objectives[o.name]) for o in plan.objectives]
        values = signed
        score = float(sum(o.weight * s for o, s in zip(plan.objectives, signed)))
    fitness = result.fitness
    if isinstance(fitness, dict):
        fitness = {k: v for k, v in fitness.items() if k != "tasks"}  # per-example scores live in per_example
    finished = time.time()
    return {
        "id": int(candidate.id),
        "genome": genome_field,
        "meta": to_jsonable(candidate.meta or {}),
        "recipe": recipe,
        "status": result.status,
        "error": result.error_line if result.error else None,
        "objectives": objectives,
        "values": values,
        "score": score,
        "per_example": result.per_example,
        "fitness": fitness,
        "split": "calibration",
        "merge_seconds": result.merge_seconds,
        "eval_seconds": result.eval_seconds,
        "worker": result.worker,
        "attempt": result.attempt,
        "asked": result.asked,
        "started": finished - result.busy_seconds,
        "finished": finished,
    }


def record_genome(store: RunStore, record: dict) -> list[float]:
    g = record.get("genome")
    if isinstance(g, dict) and "path" in g:
        path = store.root / g["path"]
        try:
            return np.load(path).tolist()
        except (OSError, ValueError) as exc:
            raise RunDirError(
                f"{path}: cannot read the genome of candidate {record.get('id')} ({type(exc).__name__}: {exc})"
            ) from None
    return g


def result_from_record(store: RunStore, record: dict):
    from evomerge.evaluator import EvalResult

    try:
        per_example = store.per_example(record)
    except (OSError, ValueError) as exc:
        raise RunDirError(
            f"{store.root}: cannot read the per-example scores of candidate {record.get('id')} ({type(exc).__name__}: {exc})"
        ) from None
    return EvalResult(
        candidate_id=int(record["id"]),
        status=record["status"],
        objectives={k: as_float(v) for k, v in (record.get("objectives") or {}).items()},
        per_example=per_example,
        fitness=record.get("fitness"),
        error=record.get("error"),
        merge_seconds=float(record.get("merge_seconds") or 0.0),
        eval_seconds=float(record.get("eval_seconds") or 0.0),
        worker=record.get("worker") or "",
        attempt=int(record.get("attempt") or 0),
        genome=record_genome(store, record),
        asked=record.get("asked"),
    )


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class _Session:
    """One process's stint on a run directory: holds the records, best, Pareto and checkpoints."""

    def __init__(self, plan: Plan, store: RunStore, records: list[dict], told: int, elapsed: float):
        from evomerge.pareto import ParetoArchive

        self.plan = plan
        self.store = store
        self.records = records
        self.by_id = {r["id"]: r for r in records}
        self.told = told
        self.elapsed_before = elapsed
        self.t0 = time.monotonic()
        self.ckpts = store.checkpoints(plan.cfg.run.keep_checkpoints)
        self.archive = ParetoArchive(len(plan.objectives))
        self.best = best_record(records)
        for r in records:
            if r.get("values") is not None:
                self.archive.add(r["id"], [as_float(v) for v in r["values"]])
        self._told_best: float | None = None
        self._told_scanned = 0
        self._last_ckpt_told = told
        self._recipes: dict[int, dict] = {}  # built for the request, reused for the log record
        self.sched = None
        self._in_flight_start: list = []
        self.bar = None

    # -- scheduler hooks ----------------------------------------------------------------------
    def request_recipe(self, candidate) -> dict:
        """The scheduler's ``to_recipe``: built once per candidate, kept for its log record."""
        recipe = self.plan.to_recipe(candidate.genome)
        if self.plan.cfg.problem != "digits":
            self._recipes[int(candidate.id)] = recipe
        return recipe

    def on_result(self, candidate, result) -> None:
        recipe = None
        if self.plan.cfg.problem != "digits":
            recipe = self._recipes.pop(int(candidate.id), None) or self.plan.to_recipe(candidate.genome)
        rec = make_record(self.plan, self.store, candidate, result, recipe=recipe)
        self.store.append(rec)
        self.records.append(rec)
        self.by_id[rec["id"]] = rec
        if rec["score"] is not None and (self.best is None or rec["score"] > as_float(self.best["score"])):
            self.best = rec
            self._write_best()
        if rec["values"] is not None and self.archive.add(rec["id"], rec["values"]):
            self._write_pareto()
        if self.bar is not None:
            self.bar.update(1)
            if self.best is not None:
                self.bar.set_postfix_str(f"best {self.best['score']:.4g} (#{self.best['id']})", refresh=False)

    def on_tell(self, n_told_session: int) -> None:
        self.told = self._told_base + n_told_session
        every = self.plan.cfg.run.checkpoint_every
        if every == "generation" or self.told - self._last_ckpt_told >= int(every):
            self.checkpoint()

    def must_beat(self) -> float | None:
        """Best score among the told records (a prefix of the log): see the module docstring."""
        if not self.plan.early_stopping:
            return None
        while self._told_scanned < min(self.told, len(self.records)):
            r = self.records[self._told_scanned]
            if r.get("score") is not None and (self._told_best is None or r["score"] > self._told_best):
                self._told_best = float(r["score"])
            self._told_scanned += 1
        return self._told_best

    # -- files --------------------------------------------------------------------------------
    def _write_best(self) -> None:
        rec = self.best
        if rec.get("recipe") is not None:
            text = yaml.safe_dump(rec["recipe"], sort_keys=False)
        else:
            text = yaml.safe_dump({"problem": self.plan.cfg.problem, "genome": rec["genome"]}, sort_keys=False)
        self.store.write_best(rec, text)

    def _write_pareto(self) -> None:
        by_id = self.by_id
        self.store.write_pareto(
            [o.name for o in self.plan.objectives], [by_id[i] for i in self.archive.ids if i in by_id]
        )

    def refresh_outputs(self) -> None:
        if self.best is not None:
            self._write_best()
        if len(self.archive):
            self._write_pareto()

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.t0)

    def checkpoint(self) -> None:
        in_flight = self.sched.in_flight() if self.sched is not None else self._in_flight_start
        state = {
            "version": 2,
            "driver": self.driver.state_dict(),
            "archive": self.archive.state_dict(),
            "rng": _rng_state(),
            "n_told": self.told,
            # asked but not told: the driver holds them as pending and will not propose them again
            "in_flight": [f.to_state() if hasattr(f, "to_state") else dict(f) for f in in_flight],
            "n_logged": len(self.records),
            "elapsed": self.elapsed(),
        }
        self.ckpts.save(self.told, state)
        self._last_ckpt_told = self.told
        self.write_progress("running")

    def write_progress(self, state: str, **extra) -> None:
        b = self.plan.cfg.budget
        self.store.write_json(
            self.store.root / "progress.json",
            {
                "state": state,
                "max_evals": b.max_evals,
                "time_limit": b.time_limit,
                "elapsed": self.elapsed(),
                "pid": os.getpid(),
                **extra,
            },
        )

    # -- the loop -----------------------------------------------------------------------------
    def drive(self, driver, known: dict, *, in_flight: list | None = None, progress: bool = True) -> Any:
        from tqdm.auto import tqdm

        from evomerge.evaluator import build_backend
        from evomerge.scheduler import Budget, Scheduler

        cfg = self.plan.cfg
        self.driver = driver
        self._told_base = self.told
        self._in_flight_start = list(in_flight or [])
        backend = build_backend(cfg.evaluator, self.plan.worker_spec)
        try:
            time_left = None
            if cfg.budget.time_limit is not None:
                time_left = max(0.0, cfg.budget.time_limit - self.elapsed_before)
            budget = Budget(max_evals=cfg.budget.max_evals, time_limit=time_left, target=cfg.budget.target)
            sched = Scheduler(
                driver,
                backend,
                budget,
                self.on_result,
                self.on_tell,
                known,
                objective_spec=self.plan.objectives,
                to_recipe=self.request_recipe,
                must_beat=self.must_beat if self.plan.early_stopping else None,
                per_example_tasks=self.plan.per_example_tasks,
                per_example_sizes=self.plan.per_example_sizes,
                evals_done=self.told,
                in_flight=self._in_flight_start,
            )
            self.sched = sched
            self.write_progress("running")
            self.bar = tqdm(
                total=cfg.budget.max_evals,
                initial=len(self.records),
                desc="search",
                unit="eval",
                disable=not progress or None,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            try:
                summary = sched.run()
            finally:
                self.bar.close()
                self.bar = None
            if summary.told or not self.ckpts.list():
                self.checkpoint()
            self.validate_on(backend)
        finally:
            backend.close()
        self.write_progress("finished", stop_reason=summary.stop_reason)
        return summary

    def validate_on(self, backend) -> None:
        """Held-out scores of the best candidate (cached in validation.json)."""
        best = self.best
        if best is None:
            return
        cached = self.store.read_json(self.store.validation_path)
        if cached and cached.get("id") == best["id"]:
            return
        self.store.write_json(self.store.validation_path, validate_record(self.plan, self.store, best, backend))


def validate_record(plan: Plan, store: RunStore, record: dict, backend=None) -> dict:
    from evomerge.evaluator import EvalRequest, InProcessBackend

    if plan.cfg.problem == "digits":
        acc = plan.problem.test_accuracy(np.asarray(record_genome(store, record), dtype=np.float32))
        return {"id": record["id"], "split": "test", "objectives": {"test_accuracy": acc}}
    own = backend is None
    backend = backend or InProcessBackend(plan.worker_spec)
    try:
        recipe = record.get("recipe") or plan.to_recipe(record_genome(store, record))
        backend.submit(EvalRequest(int(record["id"]), recipe, "validation", None))
        results = []
        while not results:
            results = backend.wait(timeout=5.0)
        res = results[0]
    finally:
        if own:
            backend.close()
    if not res.ok:
        return {"id": record["id"], "split": "validation", "objectives": None, "error": res.error_line}
    return {"id": record["id"], "split": "validation", "objectives": res.objectives}


def run(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    config_path: str | Path | None = None,
    progress: bool = True,
    plan: Plan | None = None,
) -> dict[str, Any]:
    """Start a fresh run in ``run_dir`` (which must not hold one). Returns the status summary."""
    source = str(config_path) if config_path else "config"
    config_dir = Path(config_path).resolve().parent if config_path else None
    store = RunStore(run_dir)
    store.check_fresh()  # cheap refusals first: before the plan loads models and tasks
    if cfg.evaluator.backend == "ray" and cfg.evaluator.address:
        from evomerge.evaluator.ray_pool import _check_reachable

        _check_reachable(cfg.evaluator.address)  # an unreachable cluster must not leave a run dir behind
    plan = plan or build_plan(cfg, source=source, config_dir=config_dir)
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from None
    with RunLock(run_dir):
        store.create(_resolved_yaml(plan, config_dir))
        store.write_json(store.root / "meta.json", plan.meta)
        session = _Session(plan, store, [], 0, 0.0)
        driver = plan.make_driver()
        try:
            session.drive(driver, {}, progress=progress)
        finally:
            store.close()
        return summarize(store)


def _resolved_yaml(plan: Plan, config_dir: Path | None) -> str:
    data = plan.cfg.model_dump(mode="json", exclude_none=True)
    if plan.cfg.fitness is not None and config_dir is not None:
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
    plan = build_plan(cfg, source=str(store.config_path), config_dir=base_dir)
    with RunLock(run_dir):
        records = store.read_log(repair=True, warn=warn)
        ckpts = store.checkpoints(cfg.run.keep_checkpoints)
        ckpts.remove_temporaries()
        loaded = ckpts.load_latest(log=warn)
        driver = plan.make_driver()
        told, elapsed, in_flight = 0, 0.0, []
        if loaded is not None:
            _, state = loaded
            driver.load_state_dict(state["driver"])
            told = int(state["n_told"])
            in_flight = list(state.get("in_flight") or [])
            _check_in_flight(driver, in_flight, warn)
            elapsed = float(state.get("elapsed", 0.0))
            _set_rng_state(state.get("rng"))
            if told > len(records):
                raise RunDirError(
                    f"{store.root}: the checkpoint has told {told} evaluations but {store.log_path.name} holds only {len(records)}; the log was truncated"
                )
        elif ckpts.list():
            warn(f"warning: no readable checkpoint in {ckpts.path}; replaying the whole log from the start")
        known = {int(r["id"]): result_from_record(store, r) for r in records[told:]}
        session = _Session(plan, store, records, told, elapsed)
        session.refresh_outputs()
        try:
            session.drive(driver, known, in_flight=in_flight, progress=progress)
        finally:
            store.close()
        return summarize(store)


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
    plan = build_plan(cfg, source=str(store.config_path), config_dir=base_dir)
    out = validate_record(plan, store, best)
    store.write_json(store.validation_path, out)
    return out


__all__ = ["Plan", "build_plan", "load_config", "resume", "run", "validate_best"]
