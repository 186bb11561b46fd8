"""Pareto tools, all **maximising**: the non-dominated set, non-dominated sorting, crowding distance, hypervolume, archive.

* a dominates b  ⇔  a_i ≥ b_i for every objective and a_i > b_i for at least one.
* :func:`nondominated` — the indices of the non-dominated rows (the first front), in row order,
  in O(N) memory (a run's whole log).
* :func:`non_dominated_sort` — fast non-dominated sorting (Deb et al. 2002), O(M N²): fronts
  F_1, F_2, … where F_1 is the non-dominated set and F_{k+1} is non-dominated once F_1..F_k are
  removed.
* :func:`crowding_distance` — per front, for each objective sort the points, give the two extremes
  ∞ and every inner point (v_{i+1} − v_{i−1}) / (v_max − v_min); sum over objectives.
* :func:`hypervolume` — the Lebesgue measure of ⋃_p [r, p] over the points p that strictly
  dominate the reference point r (points that do not are ignored). Exact for every dimension:
  2-D by a sweep in O(N log N); d ≥ 3 by slicing along the last objective (HSO): sort the points by
  it, and sum, over consecutive levels, slab thickness × the (d−1)-D hypervolume of the points at
  or above the slab — O(N^(d−1)) time, fine for the fronts a merge search produces (hundreds of
  points, a few objectives). :func:`hypervolume_mc` is a seeded Monte-Carlo estimate for larger
  cases, with its standard error.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` Pareto-dominates ``b`` (maximising)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return bool(np.all(a >= b) and np.any(a > b))


def nondominated(values: Any) -> np.ndarray:
    """Indices of the rows of ``values`` (N × M, maximised) that no other row dominates.

    Duplicate rows are all kept (none dominates another). O(N² M) time, one row at a time.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(0, dtype=int)
    keep = []
    for i, v in enumerate(values):
        ge = np.all(values >= v, axis=1)
        gt = np.any(values > v, axis=1)
        if not np.any(ge & gt):
            keep.append(i)
    return np.asarray(keep, dtype=int)


def non_dominated_sort(values: np.ndarray) -> list[np.ndarray]:
    """Fronts as arrays of row indices into ``values`` (N × M), best front first."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"values must be a 2-D array (points × objectives), got shape {v.shape}")
    n = v.shape[0]
    if n == 0:
        return []
    ge = np.all(v[:, None, :] >= v[None, :, :], axis=2)
    gt = np.any(v[:, None, :] > v[None, :, :], axis=2)
    dom = ge & gt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)  # how many dominate j
    fronts = []
    current = np.flatnonzero(count == 0)
    while current.size:
        fronts.append(current)
        count = count - dom[current].sum(axis=0)
        count[current] = -1
        current = np.flatnonzero(count == 0)
    return fronts


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """Crowding distance of each point of one front (N × M); extremes get ``inf``."""
    v = np.asarray(values, dtype=float)
    n, m = v.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(v[:, k], kind="stable")
        col = v[order, k]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def _hv2d(p: np.ndarray, ref: np.ndarray) -> float:
    # Sweep x from the largest down; each point adds the strip above the best y seen so far.
    order = np.argsort(-p[:, 0], kind="stable")
    hv, ymax = 0.0, ref[1]
    for x, y in p[order]:
        if y > ymax:
            hv += (x - ref[0]) * (y - ymax)
            ymax = y
    return hv


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    if len(p) == 0:
        return 0.0
    d = p.shape[1]
    if d == 1:
        return float(p[:, 0].max() - ref[0])
    if d == 2:
        return _hv2d(p, ref)
    order = np.argsort(-p[:, -1], kind="stable")
    p = p[order]
    hv = 0.0
    for i in range(len(p)):
        low = p[i + 1, -1] if i + 1 < len(p) else ref[-1]
        thick = p[i, -1] - low
        if thick > 0:
            hv += thick * _hv(p[: i + 1, :-1], ref[:-1])
    return hv


def _dominating(points: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(points, dtype=float)
    r = np.asarray(ref, dtype=float).reshape(-1)
    if p.size == 0:
        return np.zeros((0, r.shape[0])), r
    p = p.reshape(-1, r.shape[0]) if p.ndim == 1 else p
    if p.shape[1] != r.shape[0]:
        raise ValueError(f"points have {p.shape[1]} objectives, reference point has {r.shape[0]}")
    return p[np.all(p > r, axis=1)], r


def hypervolume(points: Any, ref: Any) -> float:
    """Exact hypervolume dominated by ``points`` (N × M, maximising) above reference ``ref``."""
    p, r = _dominating(points, ref)
    if len(p) == 0:
        return 0.0
    p = p[non_dominated_sort(p)[0]]
    return float(_hv(p, r))


def hypervolume_mc(
    points: Any, ref: Any, upper: Any = None, *, samples: int = 100_000, seed: int = 0
) -> tuple[float, float]:
    """Monte-Carlo hypervolume: (estimate, standard error), uniform samples in [ref, upper]
    (``upper`` defaults to the points' maxima) from ``numpy.random.default_rng(seed)``."""
    p, r = _dominating(points, ref)
    if len(p) == 0:
        return 0.0, 0.0
    u = p.max(axis=0) if upper is None else np.asarray(upper, dtype=float)
    box = float(np.prod(u - r))
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    while done < samples:
        k = min(8192, samples - done)
        x = rng.uniform(r, u, size=(k, len(r)))
        covered = np.zeros(k, dtype=bool)
        for q in p:
            covered |= np.all(x <= q, axis=1)
        hits += int(covered.sum())
        done += k
    frac = hits / samples
    return box * frac, box * float(np.sqrt(frac * (1 - frac) / samples))


class ParetoArchive:
    """The non-dominated set of everything added so far (maximising).

    ``add(id, values)`` returns True when the point entered the front (no member dominates it;
    members it dominates leave). Equal value vectors are all kept (neither dominates).
    """

    def __init__(self, n_objectives: int):
        self.n_objectives = int(n_objectives)
        self._ids: list[int] = []
        self._values: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, candidate_id: int, values: Any) -> bool:
        v = np.asarray(values, dtype=float).reshape(-1)
        if v.shape != (self.n_objectives,):
            raise ValueError(f"ParetoArchive: expected {self.n_objectives} values, got {v.shape[0]}")
        if not np.all(np.isfinite(v)):
            return False
        if any(dominates(u, v) for u in self._values):
            return False
        keep = [i for i, u in enumerate(self._values) if not dominates(v, u)]
        self._ids = [self._ids[i] for i in keep] + [int(candidate_id)]
        self._values = [self._values[i] for i in keep] + [v]
        return True

    def front(self) -> list[tuple[int, np.ndarray]]:
        """(id, values) of the non-dominated members, in order of entry."""
        return [(i, v.copy()) for i, v in zip(self._ids, self._values)]

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    def values(self) -> np.ndarray:
        return np.array(self._values, dtype=float).reshape(-1, self.n_objectives)

    def hypervolume(self, ref: Any) -> float:
        return hypervolume(self.values(), ref)

    def state_dict(self) -> dict[str, Any]:
        return {"n_objectives": self.n_objectives, "ids": list(self._ids), "values": [v.tolist() for v in self._values]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n_objectives"]) != self.n_objectives:
            raise ValueError(
                f"ParetoArchive: state has {state['n_objectives']} objectives, archive has {self.n_objectives}"
            )
        self._ids = [int(i) for i in state["ids"]]
        self._values = [np.asarray(v, dtype=float) for v in state["values"]]
