"""Shared helpers for the driver tests: a tiny box space and an ask/tell loop."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.drivers.base import Outcome


class BoxSpace:
    """The minimal SearchSpace a driver needs: a box, a start point and group boundaries."""

    def __init__(self, dim, lower=0.0, upper=1.0, x0=None, sigma0=1 / 6, boundaries=None, categories=None):
        self.dim = dim
        self.lower = np.full(dim, float(lower))
        self.upper = np.full(dim, float(upper))
        self.x0 = np.full(dim, (lower + upper) / 2) if x0 is None else np.asarray(x0, float)
        self.sigma0 = sigma0
        self.names = [f"x{i}" for i in range(dim)]
        self.group_boundaries = boundaries or [0, dim]
        if categories is not None:  # 0 = continuous gene, K = a gene with K categories
            self.categories = list(categories)

    def to_recipe(self, genome):
        return np.asarray(genome, float)

    def from_recipe(self, recipe):
        return np.asarray(recipe, float)

    def describe(self):
        return {"kind": "box", "dim": self.dim}


class SeededBox(BoxSpace):
    """A box space with named seed genomes (as a parameter space has): the corners 0 and 1, then
    0.25 and 0.75 on every gene."""

    def seed_genomes(self):
        return {name: np.full(self.dim, v) for name, v in [("low", 0.0), ("high", 1.0), ("q1", 0.25), ("q3", 0.75)]}


def evaluate(objective, cands):
    """Outcomes for candidates; ``objective(x)`` returns a value, a vector, or (values, per_example)."""
    outs = []
    for c in cands:
        r = objective(c.genome)
        if isinstance(r, tuple):
            values, per_example = r
        else:
            values, per_example = r, None
        outs.append(Outcome(c.id, np.atleast_1d(np.asarray(values, float)), per_example))
    return outs


def drive(driver, objective, n_evals, batch=4):
    """Ask/tell until ``n_evals`` candidates were told; returns every candidate in asking order.

    Generational drivers get whole-batch tells (whatever ask returned); others too."""
    seen = []
    while len(seen) < n_evals:
        cands = driver.ask(min(batch, n_evals - len(seen)))
        assert cands, "driver returned no candidates with nothing outstanding"
        driver.tell(cands, evaluate(objective, cands))
        seen.extend(cands)
    return seen


@pytest.fixture
def box():
    return BoxSpace


@pytest.fixture
def one_torch_thread():
    """Optuna's GPSampler fits in torch; tiny fits run far faster on one thread on a busy box."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
