"""Every driver: save after tell k, write the state as data and read it back (:mod:`evomerge.state`,
no pickle), load into a fresh driver built with the same arguments, continue -> exactly the
candidates of the uninterrupted run (ids and genomes)."""

import numpy as np
import optuna
import pytest
from conftest import BoxSpace, SeededBox, evaluate

from evomerge.drivers import driver_class, make_driver
from evomerge.state import pack, unpack

optuna.logging.set_verbosity(optuna.logging.WARNING)

# (ask n, tell the m oldest outstanding): asynchronous, out of step with any generation size.
PATTERN = [(3, 1), (2, 2), (4, 3), (1, 2), (3, 3), (2, 1), (5, 4), (1, 3)]


def objective(x):
    per_example = (x > 0.5).astype(float)  # non-negative per-example scores for M2N2
    return np.array([-float(np.sum((x - 0.3) ** 2)) + 1.0, float(per_example.mean())]), per_example


def objective1(x):
    values, per_example = objective(x)
    return values[:1], per_example


def play(driver, steps, outstanding, log, n_objectives):
    f = objective if n_objectives == 2 else objective1
    for n_ask, n_tell in steps:
        new = driver.ask(n_ask)
        log.extend((c.id, c.genome.copy()) for c in new)
        outstanding.extend(new)
        told, outstanding[:] = outstanding[:n_tell], outstanding[n_tell:]
        if told:
            driver.tell(told, evaluate(f, told))


CASES = {
    "cmaes": ("cmaes", {"population_size": 5}),
    "cmaes-x0": ("cmaes", {"population_size": 5, "include_x0": True}),
    "catcma": ("catcma", {"population_size": 5}),
    "catcma-mixed": ("catcma", {"population_size": 6, "flip_prob": 0.3}),
    "cmaes-sep-ipop": ("cmaes", {"population_size": 4, "separable": True, "restarts": "ipop", "patience": 1}),
    "m2n2": ("m2n2", {"archive_size": 4, "initial": "random", "mutation_std": 0.05}),
    "m2n2-corners": ("m2n2", {"archive_size": 5, "initial": np.eye(4), "crossover": "linear", "alpha": 0.0}),
    "m2n2-seeded-adapt": (
        "m2n2",
        {
            "archive_size": 4,
            "initial": "seeded",
            "initial_random": 2,
            "mutation_std": 0.05,
            "mutation_adapt": "one_fifth",
        },
    ),
    "random": ("random", {}),
    "random-lhs": ("random", {"sampling": "lhs", "lhs_size": 5}),
    "optuna-tpe": ("optuna", {"sampler": "tpe", "sampler_options": {"n_startup_trials": 4}}),
    "optuna-cmaes": ("optuna", {"sampler": "cmaes", "sampler_options": {"popsize": 4}}),
    "optuna-nsga2": ("optuna", {"sampler": "nsga2", "sampler_options": {"population_size": 4}}),
    "optuna-nsga3": ("optuna", {"sampler": "nsga3", "sampler_options": {"population_size": 4}}),
    "optuna-gp": ("optuna", {"sampler": "gp", "sampler_options": {"n_startup_trials": 3}}),
    "optuna-random": ("optuna", {"sampler": "random"}),
}
# spaces with categorical genes (the others: a plain 4-gene box)
CATEGORIES = {"catcma-mixed": [2, 0, 3, 2]}
# told both objectives (natively multi-objective); the others are told one value
MULTI = {"optuna-tpe", "optuna-nsga2", "optuna-nsga3", "random-lhs"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_load_continue_equals_uninterrupted(case, one_torch_thread):
    name, options = CASES[case]
    n_obj = 2 if case in MULTI else 1
    assert case not in MULTI or driver_class(name).multi_objective(driver_class(name).Options(**options))
    # a GP fit costs 0.5-2 s here: 3 random trials, 1 GP-proposed one (the fit the next warm-starts
    # from), save, then 2 more
    steps = [(3, 3), (1, 1), (1, 1), (1, 1)] if case == "optuna-gp" else PATTERN * 3
    k = 2 if case == "optuna-gp" else len(steps) // 2 + 1
    space = SeededBox(4) if "seeded" in case else BoxSpace(4, categories=CATEGORIES.get(case))

    def build():
        return make_driver(name, space, n_objectives=n_obj, seed=7, **options)

    ref_log, ref_out = [], []
    play(build(), steps, ref_out, ref_log, n_obj)

    log, out = [], []
    first = build()
    play(first, steps[:k], out, log, n_obj)
    blob = pack(first.state_dict())
    out_copy = list(out)
    # the saved state must not alias the live driver: keep using it, then compare both paths
    cont_log = list(log)
    play(first, steps[k:], out, cont_log, n_obj)

    resumed = build()
    resumed.load_state_dict(unpack(blob))
    play(resumed, steps[k:], out_copy, log, n_obj)

    assert len(ref_log) == sum(n for n, _ in steps) or name in ("cmaes", "catcma")
    for got in (log, cont_log):
        assert [i for i, _ in got] == [i for i, _ in ref_log]
        assert all(np.array_equal(g, r) for (_, g), (_, r) in zip(got, ref_log))


def test_cmaes_resume_mid_generation_after_restart():
    # save while a generation is half told, after an IPOP restart has already happened
    space = BoxSpace(3)
    opts = {"population_size": 4, "restarts": "ipop", "patience": 1}
    ref = make_driver("cmaes", space, seed=3, **opts)
    ref_log, ref_out = [], []
    steps = [(3, 3), (3, 2)] * 12
    play(ref, steps, ref_out, ref_log, 1)
    d = make_driver("cmaes", space, seed=3, **opts)
    log, out = [], []
    k = 0
    while not (d.restart >= 1 and d.pending_ids and d._values):  # restarted, generation half told
        play(d, steps[k : k + 1], out, log, 1)
        k += 1
    assert k < len(steps) - 3
    fresh = make_driver("cmaes", space, seed=3, **opts)
    fresh.load_state_dict(unpack(pack(d.state_dict())))
    play(fresh, steps[k:], out, log, 1)
    assert [i for i, _ in log] == [i for i, _ in ref_log]
    assert all(np.array_equal(g, r) for (_, g), (_, r) in zip(log, ref_log))


def test_loading_into_a_different_driver_is_refused():
    from evomerge.errors import ConfigError

    state = make_driver("random", BoxSpace(3)).state_dict()
    with pytest.raises(ConfigError, match=r"^drivers.m2n2: checkpoint was saved with driver='random'"):
        make_driver("m2n2", BoxSpace(3)).load_state_dict(state)
    with pytest.raises(ConfigError, match=r"checkpoint was saved with dim=3, this driver has dim=4"):
        make_driver("random", BoxSpace(4)).load_state_dict(state)
