"""Typed plug-ins: the registries, the config unions built from them, their one-line errors, the
v1 run-directory configs, and build_driver / build_space / build_backend."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.config import parse_config, with_overrides
from evomerge.drivers import DRIVERS, build_driver, driver_class
from evomerge.errors import ConfigError
from evomerge.evaluator import BACKENDS, FunctionWorkerSpec, InProcessBackend, build_backend
from evomerge.space import SPACES, DataFlowSpace, JointSpace, ParameterSpace, build_space

BASE = {"toyworld": {"preset": "test"}, "budget": {"max_evals": 3}}


@pytest.mark.parametrize(
    "patch, line",
    [
        # driver (union on name, options typed per driver)
        ({"driver": {"name": "cmaz"}}, "key 'driver.name': unknown driver 'cmaz' (did you mean 'cmaes'?)"),
        (
            {"driver": {"name": "pso"}},
            "key 'driver.name': unknown driver 'pso' (known: cmaes, catcma, m2n2, optuna, random)",
        ),
        (
            {"driver": {"name": "cmaes", "options": {"sigma": 0.3}}},
            "unknown key 'driver.options.sigma' (did you mean 'driver.options.sigma0'?)",
        ),
        (
            {"driver": {"options": {"population_size": 3}}},  # no name: cmaes
            "key 'driver.options.population_size': Input should be greater than or equal to 4 (got 3)",
        ),
        (
            {"driver": {"name": "cmaes", "options": {"weights": [0.5, 0.5]}}},
            "unknown key 'driver.options.weights' (known keys: population_size, sigma0, x0, separable, "
            "sep_threshold, restarts, max_restarts, inc_popsize, patience, include_x0)",
        ),
        (
            {"driver": {"name": "m2n2", "options": {"archive": 4}}},
            "unknown key 'driver.options.archive' (did you mean 'driver.options.archive_size'?)",
        ),
        (
            {"driver": {"name": "m2n2", "options": {"initial": "corners"}}},
            "key 'driver.options.initial': Input should be 'x0', 'random', 'seeded' or 'experts' (got 'corners')",
        ),
        (
            {"driver": {"name": "m2n2", "options": {"initial": [[0.1, 0.2], [0.3]]}}},
            "key 'driver.options.initial': expected k >= 1 genomes of one length, got rows of lengths [2, 1]",
        ),
        (
            {"driver": {"name": "m2n2", "options": {"alpha": -1}}},
            "key 'driver.options.alpha': Input should be greater than or equal to 0 (got -1)",
        ),
        (
            {"driver": {"name": "optuna", "options": {"sampler": "bohb"}}},
            "key 'driver.options.sampler': Input should be 'tpe', 'cmaes', 'nsga2', 'nsga3', 'gp' or 'random' "
            "(got 'bohb')",
        ),
        (
            {"driver": {"name": "random", "options": {"sampling": "sobol"}}},
            "key 'driver.options.sampling': Input should be 'uniform' or 'lhs' (got 'sobol')",
        ),
        ({"driver": {"name": "cmaes", "opts": {}}}, "unknown key 'driver.opts' (did you mean 'driver.options'?)"),
        # evaluator (union on backend; worker keys + the backend's options)
        (
            {"evaluator": {"backend": "slurm"}},
            "key 'evaluator.backend': unknown evaluator 'slurm' (known: inprocess, ray)",
        ),
        (
            {"evaluator": {"num_gpus": 1}},  # no backend: inprocess, which has no GPUs option
            "unknown key 'evaluator.num_gpus' (known keys: backend, num_workers, timeout, hard_timeout_grace, device, dtype, batch_size, memory, search_cache)",
        ),
        (
            {"evaluator": {"backend": "ray", "num_gpu": 1}},
            "unknown key 'evaluator.num_gpu' (did you mean 'evaluator.num_gpus'?)",
        ),
        (
            {"evaluator": {"backend": "ray", "max_attempts": 0}},
            "key 'evaluator.max_attempts': Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"evaluator": {"backend": "ray", "device": "gpu"}},
            "key 'evaluator.device': expected auto, cpu, cuda, cuda:N or mps, got 'gpu'",
        ),
        # space (union on kind)
        ({"space": {"kind": "paramter"}}, "key 'space.kind': unknown space 'paramter' (did you mean 'parameter'?)"),
        ({"space": {"layer_group": 2}}, "unknown key 'space.layer_group' (did you mean 'space.layer_groups'?)"),
        ({"space": {"method": "tie"}}, "key 'space.method': unknown merge method 'tie' (did you mean 'ties'?)"),
        (
            {"space": {"ranges": {"weight": [1.0, 0.0]}}},
            "key 'space.ranges.weight': expected [lo, hi] with lo <= hi, got [1, 0]",
        ),
        (
            {"space": {"kind": "dataflow", "repeats": 0}},
            "key 'space.repeats': Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"space": {"kind": "dataflow", "layer_groups": 3}},  # a parameter-space key, not at its v1 default
            "unknown key 'space.layer_groups' (known keys: kind, repeats, embed_from, fix_ends, scale_mode, "
            "scale_range, indicator_margin, encoding)",
        ),
        (
            {"space": {"kind": "psdfs", "scale_mod": "none"}},
            "unknown key 'space.scale_mod' (did you mean 'space.scale_mode'?)",
        ),
        # digits
        ({"problem": "digits", "digits": {"sed": 1}}, "unknown key 'digits.sed' (did you mean 'digits.seed'?)"),
    ],
)
def test_plug_in_sections_give_one_line_errors(patch, line):
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE | patch, "runs.yaml")
    assert str(exc.value) == f"runs.yaml: {line}"


def test_every_registered_plug_in_is_configurable_with_its_options():
    for name in DRIVERS:
        cfg = parse_config(BASE | {"driver": {"name": name}})
        assert cfg.driver.name == name and type(cfg.driver.options) is DRIVERS.get(name).Options
    for name in BACKENDS:
        ev = parse_config(BASE | {"evaluator": {"backend": name}}).evaluator
        assert ev.backend == name and isinstance(ev, BACKENDS.get(name).Options)
    for name in SPACES:
        sp = parse_config(BASE | {"space": {"kind": name}}).space
        assert sp.kind == name and isinstance(sp, SPACES.get(name).Options)
    default = parse_config(BASE)
    assert (default.space.kind, default.driver.name, default.evaluator.backend) == ("parameter", "cmaes", "inprocess")


# Resolved configs as v1 wrote them into run directories (every space key, whatever the kind),
# from experiments/toy-dfs-cmaes, evollm-jp-psdfs and m2n2-digits.
V1_DATAFLOW = {
    "space": {
        "kind": "dataflow",
        "method": "task_arithmetic",
        "layer_groups": 1,
        "ranges": {},
        "fixed": {},
        "non_layer": "separate",
        "options": {},
        "repeats": 2,
        "embed_from": "math",
        "fix_ends": True,
        "scale_mode": "per_layer",
        "scale_range": [0.5, 2.0],
    },
    "driver": {"name": "cmaes", "options": {}},
    "evaluator": {"backend": "inprocess", "device": "auto", "dtype": "float32", "batch_size": 32},
}
V1_PSDFS = {
    "space": {
        "kind": "psdfs",
        "method": "dare_ties",
        "layer_groups": 1,
        "params": ["weight", "density"],
        "ranges": {"weight": [0.0, 1.0], "density": [0.0, 1.0]},
        "fixed": {},
        "non_layer": "separate",
        "options": {},
        "repeats": 3,
        "embed_from": "shisa",
        "fix_ends": True,
        "scale_mode": "matrix",
    },
    "driver": {"name": "cmaes", "options": {"population_size": 128, "separable": "auto"}},
    "evaluator": {"backend": "ray", "num_gpus": 1.0, "device": "auto", "dtype": "bfloat16", "batch_size": 16},
}
V1_DIGITS = {
    "problem": "digits",
    "space": {
        "kind": "parameter",
        "method": "task_arithmetic",
        "layer_groups": 1,
        "ranges": {},
        "fixed": {},
        "non_layer": "separate",
        "options": {},
        "repeats": 2,
        "fix_ends": True,
        "scale_mode": "matrix",
    },
    "driver": {"name": "m2n2", "options": {"archive_size": 20, "alpha": 1.0, "initial": "experts", "split": "any"}},
    "evaluator": {"backend": "inprocess", "device": "auto", "dtype": "float32", "batch_size": 32},
    "digits": {"seed": 0},
}


def test_v1_run_directory_configs_still_load_and_mean_the_same():
    dfs = parse_config(BASE | V1_DATAFLOW)
    assert dfs.space.model_dump() == {
        "kind": "dataflow",
        "repeats": 2,
        "embed_from": "math",
        "fix_ends": True,
        "scale_mode": "per_layer",
        "scale_range": (0.5, 2.0),
        "indicator_margin": 0.25,
        "encoding": "indicator",
    }
    joint = parse_config(BASE | V1_PSDFS)
    assert (joint.space.method, joint.space.params, joint.space.repeats, joint.space.embed_from) == (
        "dare_ties",
        ["weight", "density"],
        3,
        "shisa",
    )
    assert (joint.driver.options.population_size, joint.evaluator.num_gpus, joint.evaluator.num_workers) == (
        128,
        1,
        None,
    )
    digits = parse_config(BASE | V1_DIGITS)
    assert digits.digits.seed == 0 and digits.driver.options.initial == "experts"
    # what this version writes reads back to the same config
    for cfg in (dfs, joint, digits):
        assert parse_config(cfg.model_dump(mode="json", exclude_none=True)) == cfg


@pytest.mark.parametrize(
    "name, options, multi",
    [
        ("cmaes", {}, False),
        ("m2n2", {}, False),
        ("random", {}, True),
        ("optuna", {"sampler": "tpe"}, True),
        ("optuna", {"sampler": "nsga2"}, True),
        ("optuna", {"sampler": "cmaes"}, False),
    ],
)
def test_build_driver_tells_single_objective_drivers_one_value(name, options, multi, box):
    section = parse_config(BASE | {"driver": {"name": name, "options": options}}).driver
    assert driver_class(name).multi_objective(section.options) is multi
    driver = build_driver(section, box(3), n_objectives=3, seed=1)
    assert driver.n_objectives == (3 if multi else 1)
    assert build_driver(section, box(3), n_objectives=1, seed=1).n_objectives == 1


class _Box:
    def __init__(self, dim):
        self.dim, self.lower, self.upper = dim, np.zeros(dim), np.ones(dim)
        self.x0, self.sigma0, self.names, self.group_boundaries = np.full(dim, 0.5), 1 / 6, [], [0, dim]


@pytest.fixture
def box():
    return _Box


EXPERTS = {"math": "x/math", "lang": "x/lang"}


def _build(space, **kw):
    section = parse_config(BASE | {"space": space}).space
    return build_space(section, base="x/base", experts=EXPERTS, num_layers=4, seed=3, dtype="float16", **kw)


def test_build_space_per_kind_equals_the_hand_built_space():
    ps = _build({"method": "ties", "layer_groups": 2, "params": ["weight", "density"]})
    ref = ParameterSpace(
        "ties",
        "x/base",
        list(EXPERTS.values()),
        4,
        layer_groups=2,
        params=["weight", "density"],
        seed=3,
        dtype="float16",
    )
    assert isinstance(ps, ParameterSpace) and ps.describe() == ref.describe()
    assert ps.to_recipe(ps.x0) == ref.to_recipe(ref.x0)

    dfs = _build({"kind": "dataflow", "repeats": 3, "embed_from": "lang", "scale_mode": "none"})
    ref = DataFlowSpace(
        {"math": 4, "lang": 4}, repeats=3, embed_from="lang", scale_mode="none", sources=EXPERTS, dtype="float16"
    )
    assert isinstance(dfs, DataFlowSpace) and dfs.describe() == ref.describe()
    assert dfs.to_recipe(dfs.x0) == ref.to_recipe(ref.x0)

    joint = _build({"kind": "psdfs", "layer_groups": 2, "params": ["weight"], "repeats": 2, "embed_from": "lang"})
    ps_ref = ParameterSpace(
        "task_arithmetic",
        "x/base",
        list(EXPERTS.values()),
        4,
        layer_groups=2,
        params=["weight"],
        seed=3,
        dtype="float16",
    )
    merged = ps_ref.to_recipe(ps_ref.x0).model_dump(mode="json", exclude_none=True)
    dfs_ref = DataFlowSpace(
        {"merged": 4, "math": 4},
        repeats=2,
        embed_from="merged",
        sources={"merged": merged, "math": "x/math"},
        dtype="float16",
    )
    ref = JointSpace(ps_ref, dfs_ref, ps_source="merged")
    assert isinstance(joint, JointSpace) and joint.describe() == ref.describe()
    assert joint.to_recipe(joint.x0) == ref.to_recipe(ref.x0)


def test_build_space_checks_the_frame_expert():
    for kind in ("dataflow", "psdfs"):
        with pytest.raises(ConfigError) as exc:
            _build({"kind": kind, "embed_from": "code"}, source="runs.yaml")
        assert str(exc.value) == "runs.yaml: space.embed_from: 'code' is not an expert (known: math, lang)"


def test_build_backend_takes_the_backend_options_of_the_section():
    section = parse_config(BASE | {"evaluator": {"num_workers": 3, "timeout": 2.5, "batch_size": 8}}).evaluator
    backend = build_backend(section, FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere"))
    try:
        assert isinstance(backend, InProcessBackend)
        assert (backend.num_workers, backend.worker.timeout) == (3, 2.5)
    finally:
        backend.close()


def test_backend_override_keeps_only_what_the_config_sets():
    cfg = parse_config(BASE | {"evaluator": {"dtype": "bfloat16"}})
    ray = with_overrides(cfg, backend="ray", address="127.0.0.1:6379").evaluator
    # the in-process default num_workers=1 is not carried over: Ray sizes the pool itself
    assert (ray.backend, ray.address, ray.num_workers, ray.dtype) == ("ray", "127.0.0.1:6379", None, "bfloat16")
    # --address names a Ray cluster: it implies the ray backend, and refuses another one
    implied = with_overrides(cfg, address="auto").evaluator
    assert (implied.backend, implied.address, implied.dtype) == ("ray", "auto", "bfloat16")
    with pytest.raises(ConfigError) as exc:
        with_overrides(cfg, backend="inprocess", address="auto")
    assert str(exc.value) == (
        "--address auto names a Ray cluster, but --backend is inprocess; drop --address or use --backend ray"
    )
