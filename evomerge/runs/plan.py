"""The composition root: a run config becomes a validated :class:`Plan` before anything is written.

:func:`build_plan` performs every check that needs no evaluation — the driver's name and options,
the problem's models, tasks and space (:meth:`MergeProblem.build`, :meth:`DigitsProblem.build`),
``budget.target`` against the objectives — so a user error never leaves a run directory behind.
The plan then hands out what the run needs: the problem, the stopping target, a fresh driver and a
fresh evaluator backend.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evomerge.config import RunConfig
from evomerge.errors import ConfigError
from evomerge.objectives import Target
from evomerge.runs.digits import DigitsProblem
from evomerge.runs.merge import MergeProblem
from evomerge.runs.problem import Problem


# ---- H3 adapter: until the typed plug-ins land (drivers' multi_objective, evomerge.space.build_space,
# ---- evomerge.drivers.build_driver, evomerge.evaluator.build_backend), today's code behind their names.
def multi_objective(section) -> bool:  # H3 adapter: driver_class(section.name).multi_objective(section.options)
    """Natively multi-objective drivers see every objective; the rest a weighted scalarisation."""
    name = section.name
    return name == "random" or (name == "optuna" and section.options.get("sampler", "tpe") != "cmaes")


def build_driver(section, space, *, n_objectives: int, seed: int):  # H3 adapter: evomerge.drivers.build_driver
    from evomerge.drivers import make_driver

    return make_driver(section.name, space, n_objectives=n_objectives, seed=seed, **dict(section.options))


def build_backend(section, spec):  # H3 adapter: evomerge.evaluator.build_backend
    from evomerge.evaluator import make_backend

    options: dict[str, Any] = {}
    if section.backend == "ray":
        options = {"num_workers": section.num_workers, "num_gpus": section.num_gpus}
    elif section.num_workers is not None:
        options = {"num_workers": section.num_workers}  # deterministic slots (see InProcessBackend)
    return make_backend(section.backend, spec, address=section.address if section.backend == "ray" else None, **options)


def build_space(section, *, base, experts: dict[str, str], num_layers: int, seed: int, dtype: str, source: str):
    # H3 adapter: evomerge.space.build_space (today's runs/loop._build_space, unchanged)
    from evomerge.space import DataFlowSpace, JointSpace, ParameterSpace

    sp = section
    ps_kwargs = dict(
        layer_groups=sp.layer_groups,
        params=sp.params,
        ranges={k: tuple(v) for k, v in sp.ranges.items()} or None,
        method_choices=sp.method_choices,
        fixed=sp.fixed or None,
        non_layer=sp.non_layer,
        seed=seed,
        dtype=dtype,
        options=sp.options or None,
    )
    dfs_kwargs = dict(repeats=sp.repeats, fix_ends=sp.fix_ends, scale_mode=sp.scale_mode, dtype=dtype)
    if sp.scale_range is not None:
        dfs_kwargs["scale_range"] = tuple(sp.scale_range)
    if sp.kind == "parameter":
        return ParameterSpace(sp.method, base, list(experts.values()), num_layers, **ps_kwargs)
    # Data-flow sources are the experts (model A first unless embed_from names another).
    embed = sp.embed_from or next(iter(experts))
    if embed not in experts:
        raise ConfigError(f"{source}: space.embed_from: {embed!r} is not an expert (known: {', '.join(experts)})")
    if sp.kind == "dataflow":
        return DataFlowSpace({n: num_layers for n in experts}, embed_from=embed, sources=dict(experts), **dfs_kwargs)
    # psdfs, joint: model A is a PS merge of every expert; the other experts keep their own layers.
    ps = ParameterSpace(sp.method, base, list(experts.values()), num_layers, **ps_kwargs)
    names = ["merged"] + [n for n in experts if n != embed]
    sources = {
        "merged": ps.to_recipe(ps.x0).model_dump(mode="json", exclude_none=True),
        **{n: experts[n] for n in names[1:]},
    }
    dfs = DataFlowSpace({n: num_layers for n in names}, embed_from="merged", sources=sources, **dfs_kwargs)
    return JointSpace(ps, dfs, ps_source="merged")


# ---- end of the H3 adapters ------------------------------------------------------------------


@dataclass
class Plan:
    """Everything a run needs, built and checked before the run directory is touched."""

    cfg: RunConfig
    problem: Problem
    target: Target
    make_driver: Callable[[], Any]  # a fresh driver (the same arguments every time)
    make_backend: Callable[[], Any]  # a fresh evaluator backend over the problem's worker


def build_problem(cfg: RunConfig, *, source: str, config_dir: str | Path | None, log) -> Problem:
    builders: dict[str, Callable[[], Problem]] = {
        "merge": lambda: MergeProblem.build(
            cfg, source=source, config_dir=config_dir, log=log, build_space=build_space
        ),
        "digits": lambda: DigitsProblem.build(cfg, source=source),
    }
    return builders[cfg.problem]()


def build_plan(cfg: RunConfig, *, source: str = "config", config_dir: str | Path | None = None, log=None) -> Plan:
    """Validate ``cfg`` against the world (models, tasks, names) and build what the run needs."""
    from evomerge.drivers import driver_names

    log = log or (lambda m: print(m, file=sys.stderr))
    if cfg.driver.name not in driver_names():
        raise ConfigError(
            f"{source}: driver.name: unknown driver {cfg.driver.name!r} (known: {', '.join(driver_names())})"
        )
    problem = build_problem(cfg, source=source, config_dir=config_dir, log=log)
    objectives = problem.objectives
    target = objectives.target(cfg.budget.target, where=f"{source}: budget.target")
    n_objectives = len(objectives) if multi_objective(cfg.driver) else 1
    section = cfg.driver.model_copy(update={"options": problem.driver_options(dict(cfg.driver.options))})

    def make_driver():
        return build_driver(section, problem.space, n_objectives=n_objectives, seed=cfg.run.seed)

    make_driver()  # unknown options, bad values: now, not after the run directory exists
    return Plan(cfg, problem, target, make_driver, lambda: build_backend(cfg.evaluator, problem.worker_spec))


__all__ = ["Plan", "build_plan", "build_problem"]
