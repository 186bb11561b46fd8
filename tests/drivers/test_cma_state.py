"""cmaes optimisers and Optuna studies as data: rebuilt exactly, never unpickled, and a state that
is not what the package's constructor builds is refused."""

import pickle

import numpy as np
import optuna
import pytest
from conftest import BoxSpace, evaluate

from evomerge.drivers import make_driver
from evomerge.drivers.cma_state import cma_data, cma_from_data
from evomerge.state import StateError, pack, unpack

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trained(kind):
    import cmaes

    cls = cmaes.CMA if kind == "CMA" else cmaes.SepCMA
    opt = cls(mean=np.full(3, 0.5), sigma=0.3, bounds=np.array([[0.0, 1.0]] * 3), seed=4, population_size=4)
    for _ in range(3):
        xs = [opt.ask() for _ in range(4)]
        opt.tell([(x, float(np.sum((x - 0.2) ** 2))) for x in xs])
    return opt


@pytest.mark.parametrize("kind", ["CMA", "SepCMA"])
def test_optimizer_round_trip_is_exact(kind):
    opt = _trained(kind)
    back = cma_from_data(unpack(pack(cma_data(opt))), "opt")
    assert type(back) is type(opt)
    mine, theirs = vars(opt), vars(back)
    assert set(mine) == set(theirs)
    for key, value in mine.items():
        if key == "_rng":
            continue
        if isinstance(value, np.ndarray):
            assert value.tobytes() == theirs[key].tobytes(), key
        elif value is None or isinstance(value, float) and np.isnan(value):
            assert theirs[key] is None or np.isnan(theirs[key]), key
        else:
            assert value == theirs[key], key
    # the same RNG state: the same draws, the same update
    xs, ys = [opt.ask() for _ in range(4)], [back.ask() for _ in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(xs, ys))
    opt.tell([(x, float(np.sum(x))) for x in xs])
    back.tell([(y, float(np.sum(y))) for y in ys])
    assert np.array_equal(opt.mean, back.mean)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["attrs"].update(_evil="x"), "opt.attrs: attributes _evil do not belong to a cmaes.CMA"),
        (lambda d: d["attrs"].pop("_pc"), "opt.attrs: attributes _pc do not belong to a cmaes.CMA"),
        (lambda d: d["attrs"].update(_C=np.eye(2)), "opt.attrs._C: expected shape (3, 3), got (2, 2)"),
        (lambda d: d["attrs"].update(_g="7"), "opt.attrs._g: expected an int, got a str"),
        (lambda d: d["attrs"].update(_B=np.zeros(5)), "opt.attrs._B: expected shape (3, 3), got (5,)"),
        (lambda d: d.update({"class": "CMAwM"}), "opt.class: expected one of CMA, SepCMA, got 'CMAwM'"),
        (lambda d: d["attrs"].update(_n_dim=0), "opt.attrs._n_dim: expected an int >= 1, got 0"),
    ],
)
def test_a_state_cmaes_would_not_build_is_refused(edit, message):
    data = unpack(pack(cma_data(_trained("CMA"))))
    edit(data)
    with pytest.raises(StateError) as exc:
        cma_from_data(data, "opt")
    assert str(exc.value) == message


def _played(sampler_options):
    d = make_driver("optuna", BoxSpace(3), seed=1, sampler="cmaes", sampler_options=sampler_options)
    for _ in range(3):
        cands = d.ask(4)
        d.tell(cands, evaluate(lambda x: -float(np.sum((x - 0.3) ** 2)), cands))
    return d


def test_optuna_cmaes_state_holds_its_optimizer_as_data_not_a_pickle():
    d = _played({"popsize": 4})
    state = d.state_dict()
    assert not any(k.startswith("cma:optimizer") for t in state["trials"] for k in t["system_attrs"])
    with_opt = [t for t in state["trials"] if t["cma_optimizer"] is not None]
    assert with_opt and with_opt[-1]["cma_optimizer"]["optimizer"]["class"] == "CMA"
    resumed = make_driver("optuna", BoxSpace(3), seed=1, sampler="cmaes", sampler_options={"popsize": 4})
    resumed.load_state_dict(unpack(pack(state)))
    a, b = d.ask(4), resumed.ask(4)
    assert all(np.array_equal(x.genome, y.genome) for x, y in zip(a, b))


def test_a_pickled_optimizer_smuggled_into_trial_attributes_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = unpack(pack(_played({"popsize": 4}).state_dict()))
    state["trials"][-1]["system_attrs"]["cma:optimizer:0"] = pickle.dumps(Evil()).hex()
    fresh = make_driver("optuna", BoxSpace(3), seed=1, sampler="cmaes", sampler_options={"popsize": 4})
    with pytest.raises(StateError) as exc:
        fresh.load_state_dict(state)
    n = len(state["trials"]) - 1
    assert str(exc.value) == (
        f"driver.trials[{n}].system_attrs.cma:optimizer:0: a pickled optimiser, which is never loaded"
    )
    assert not marker.exists()


def test_optuna_sampler_states_must_match_the_sampler():
    state = unpack(pack(make_driver("optuna", BoxSpace(3), seed=1, sampler="nsga2", n_objectives=2).state_dict()))
    assert sorted(state["sampler"]["rngs"]) == [
        "_child_generation_strategy._rng",
        "_random_sampler._rng",
        "_rng",
    ]
    state["sampler"]["rngs"]["_extra"] = state["sampler"]["rngs"]["_rng"]
    with pytest.raises(
        StateError, match=r"^driver.sampler.rngs: random states _extra do not belong to a NSGAIISampler$"
    ):
        make_driver("optuna", BoxSpace(3), seed=1, sampler="nsga2", n_objectives=2).load_state_dict(state)
