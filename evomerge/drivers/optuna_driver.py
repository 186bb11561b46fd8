"""Any Optuna sampler as a driver, through ``study.ask`` / ``study.tell``.

The genome is the space's box: one ``FloatDistribution(lower_i, upper_i)`` per gene (named by
``space.names`` when those are unique, else ``g0000``, ``g0001``, …), suggested all at once with
``study.ask(fixed_distributions=...)``. Every objective is maximised.

Samplers (``sampler=``): ``tpe`` (default), ``cmaes`` (single-objective; Optuna's own start: the
box centre and σ0 = 1/6 of the narrowest range — the paper's 0.5 and 1/6 on a unit box — since
its ``x0``/``sigma0`` arguments are deprecated), ``nsga2``, ``nsga3``, ``gp``, ``random``; ``sampler_options`` are passed to the sampler's constructor. Multi-objective studies
work natively with every sampler but ``cmaes``.

* **Steady state** for every sampler (``generational = False``): Optuna's samplers are built for
  asynchronous trials — NSGA-II/III assign each trial to a generation themselves and build the
  next generation's parents once enough trials of the previous one are complete; CmaEsSampler
  keeps its generation in trial attributes. Batching asks/tells would add idle workers and no
  correctness.
* **Failures** are told as ``TrialState.FAIL``: kept in the study (and the dashboard), never
  used as a parent or model point by any Optuna sampler — Optuna's own notion of "worst".
* **Exact resume**: ``state_dict`` holds, as data (:mod:`evomerge.drivers.optuna_state`), every
  trial (running ones included, with the system attributes samplers keep there), the study's
  system/user attributes, and the sampler's random states (plus GPSampler's kernel warm start).
  ``load_state_dict`` builds a fresh sampler with the same options, restores those states and
  rebuilds an in-memory study with ``create_trial`` + ``add_trial`` in the same order (same trial
  numbers and ids), so the next ``ask`` is what the uninterrupted run would ask.
* **Dashboard**: with ``storage="RUN_DIR/optuna.db"`` every finished trial is mirrored into that
  SQLite file (study ``evomerge``), so ``optuna-dashboard sqlite:///RUN_DIR/optuna.db`` shows the
  run; ``load_state_dict`` rewrites the mirror from the checkpoint (dropping trials a crashed
  run had mirrored after it). The mirror is write-only: the search never reads it.
"""

from __future__ import annotations

import copy
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from evomerge.drivers.base import Candidate, DriverBase, DriverOptions, Outcome, outcome_failed
from evomerge.drivers.optuna_state import add_trials, load_sampler_data, sampler_data, trials_data
from evomerge.errors import ConfigError
from evomerge.state import StateError, as_int

Sampler = Literal["tpe", "cmaes", "nsga2", "nsga3", "gp", "random"]
SAMPLERS = typing.get_args(Sampler)
STUDY_NAME = "evomerge"


class OptunaOptions(DriverOptions):
    sampler: Sampler = "tpe"
    sampler_options: dict[str, Any] = Field(default_factory=dict)  # the sampler constructor's keywords
    storage: Path | None = None  # SQLite mirror for optuna-dashboard (write-only)


class OptunaDriver(DriverBase):
    name = "optuna"
    generational = False
    Options = OptunaOptions

    @classmethod
    def multi_objective(cls, options: OptunaOptions) -> bool:
        return options.sampler != "cmaes"  # CmaEsSampler is single-objective

    def __init__(
        self, space: Any, options: OptunaOptions | dict | None = None, *, n_objectives: int = 1, seed: int = 0
    ):
        super().__init__(space, options, n_objectives=n_objectives, seed=seed)
        self._require_finite_box()
        self.sampler_name = self.options.sampler
        self.sampler_options = dict(self.options.sampler_options)
        if self.sampler_name == "cmaes" and self.sampler_options.get("with_margin"):
            raise ConfigError(
                "drivers.optuna: sampler_options.with_margin is for discrete parameters, and every gene is continuous"
            )
        names = list(getattr(space, "names", []) or [])
        if len(names) != self.dim or len(set(names)) != self.dim:
            names = [f"g{i:04d}" for i in range(self.dim)]
        self.param_names = names
        import optuna

        self._optuna = optuna
        self._distributions = {
            n: optuna.distributions.FloatDistribution(float(lo), float(hi))
            for n, lo, hi in zip(names, self.lower, self.upper)
        }
        self._directions = ["maximize"] * self.n_objectives
        self.storage_path = self.options.storage
        self._study = self._new_study(self._make_sampler())
        self._id_to_number: dict[int, int] = {}
        self._mirror = None
        self._mirrored: set[int] = set()
        if self.storage_path is not None:
            self._resync_mirror()

    def _single_objective_what(self) -> str:
        return f"sampler {self.options.sampler!r}"

    # -- construction --------------------------------------------------------------------------
    def _make_sampler(self):
        s = self._optuna.samplers
        opts = dict(self.sampler_options)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=self._optuna.exceptions.ExperimentalWarning)
                if self.sampler_name == "tpe":
                    return s.TPESampler(seed=self.seed, **opts)
                if self.sampler_name == "cmaes":
                    # x0 / sigma0 are deprecated in Optuna >= 4.9; its defaults (box centre,
                    # σ0 = 1/6 of the narrowest range) are the paper's 0.5 and 1/6 on a unit box.
                    return s.CmaEsSampler(seed=self.seed, **opts)
                if self.sampler_name == "nsga2":
                    return s.NSGAIISampler(seed=self.seed, **opts)
                if self.sampler_name == "nsga3":
                    return s.NSGAIIISampler(seed=self.seed, **opts)
                if self.sampler_name == "gp":
                    return s.GPSampler(seed=self.seed, **opts)
                return s.RandomSampler(seed=self.seed, **opts)
        except TypeError as exc:
            raise ConfigError(f"drivers.optuna: bad sampler_options for {self.sampler_name}: {exc}") from None

    def _new_study(self, sampler):
        return self._optuna.create_study(
            storage=self._optuna.storages.InMemoryStorage(),
            sampler=sampler,
            study_name=STUDY_NAME,
            directions=self._directions,
        )

    @property
    def study(self):
        """The in-memory Optuna study (read it; do not ask/tell on it directly)."""
        return self._study

    # -- mirror --------------------------------------------------------------------------------
    def _resync_mirror(self) -> None:
        optuna = self._optuna
        self.storage_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{self.storage_path.resolve()}"
        rdb = optuna.storages.RDBStorage(url)
        try:
            optuna.delete_study(study_name=STUDY_NAME, storage=rdb)
        except KeyError:
            pass
        self._mirror = optuna.create_study(
            storage=rdb,
            study_name=STUDY_NAME,
            directions=self._directions,
            sampler=optuna.samplers.RandomSampler(seed=0),  # never samples: mirror only
        )
        self._mirror.set_user_attr("evomerge_sampler", self.sampler_name)
        self._mirrored = set()
        self._mirror_finished()

    def _mirror_finished(self) -> None:
        if self._mirror is None:
            return
        for ft in self._study.get_trials(deepcopy=False):
            if ft.state.is_finished() and ft.number not in self._mirrored:
                self._mirror.add_trial(ft)
                self._mirrored.add(ft.number)

    # -- protocol ------------------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        out = []
        for _ in range(int(n)):
            trial = self._study.ask(fixed_distributions=self._distributions)
            genome = np.array([trial.params[name] for name in self.param_names], dtype=float)
            cand = self._new_candidate(genome, trial_number=trial.number)
            trial.set_user_attr("candidate_id", cand.id)
            self._id_to_number[cand.id] = trial.number
            out.append(cand)
        return out

    def tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        self._take_pending(candidates, outcomes)
        state = self._optuna.trial.TrialState
        for cand, out in zip(candidates, outcomes):
            number = self._id_to_number.pop(cand.id)
            if outcome_failed(out, self.n_objectives):
                self._study.tell(number, state=state.FAIL)
            else:
                values = [float(v) for v in np.asarray(out.values, dtype=float).reshape(-1)]
                self._study.tell(number, values if self.n_objectives > 1 else values[0])
        self._mirror_finished()

    def state_dict(self) -> dict[str, Any]:
        state = self._base_state()
        storage, sid = self._study._storage, self._study._study_id
        state.update(
            sampler_name=self.sampler_name,
            sampler=sampler_data(self._study.sampler),
            trials=trials_data(self._study.get_trials(deepcopy=False)),
            study_system_attrs=copy.deepcopy(storage.get_study_system_attrs(sid)),
            study_user_attrs=copy.deepcopy(storage.get_study_user_attrs(sid)),
            id_to_number=dict(self._id_to_number),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = self._load_base_state(state)
        if r.get("sampler_name") != self.sampler_name:
            raise ConfigError(
                f"drivers.optuna: checkpoint was saved with sampler {state['sampler_name']!r}, "
                f"this driver has {self.sampler_name!r}"
            )
        sampler = self._make_sampler()
        load_sampler_data(sampler, r.get("sampler"))
        study = self._new_study(sampler)
        storage, sid = study._storage, study._study_id
        for key, value in r.sub("study_system_attrs").data.items():
            storage.set_study_system_attr(sid, str(key), copy.deepcopy(value))
        for key, value in r.sub("study_user_attrs").data.items():
            storage.set_study_user_attr(sid, str(key), copy.deepcopy(value))
        add_trials(study, r.get("trials"))
        id_to_number = r.int_map("id_to_number", as_int)
        if sorted(id_to_number) != sorted(self._pending):
            raise StateError(
                f"driver.id_to_number: ids {sorted(id_to_number)} are not the pending {sorted(self._pending)}"
            )
        self._study = study
        self._id_to_number = id_to_number
        if self.storage_path is not None:
            self._resync_mirror()
