"""M2N2 — model merging with competition and attraction (Abrantes, Lange, Tang, GECCO 2025).

The archive holds up to P members (``archive_size``, 20), each with a genome and a row of
per-example scores s[i, j] ≥ 0 (member i on training example j; accuracy → 0/1).

* **Resource competition.** z_j = (Σ_k s_kj)^α over the members (z_j = 0 → 1); shared fitness
  f_i = Σ_j s_ij / z_j. With α = 1 an example solved by few members is worth more, so niches
  survive; α = 0 gives z ≡ 1 and f_i = Σ_j s_ij, the plain GA ablation.
* **Update (steady state).** A told child joins; if the archive is full, the shared fitness of all
  P + 1 (z recomputed with the child) is computed and the minimum leaves (first index on ties,
  so an incumbent with equal fitness makes room for the newcomer). Empty slots are filled first.
  Failed candidates never enter.
* **Parents.** A ∝ f (uniform when every f is 0). B ∝ attraction
  g(A, B) = Σ_j max(0, s_Bj/z_j − s_Aj/z_j) — what B solves that A does not — with g(A, A) = 0.
  Guard: when every g is 0 (B has nothing A lacks, e.g. identical members or α = 0 with A best
  everywhere) B ∝ f excluding A, and uniform excluding A if that is all zero too, so no 0/0.
  ``attraction=False`` always uses the guard's rule (the "without attraction" ablation).
* **Crossover.** Split point k and mixing ratio w ~ U(0, 1); genes before k mix with t = w, genes
  from k on with t = 1 − w, by SLERP with one global angle Ω between the flat genomes a, b:
  child_i = sin((1−t_i)Ω)/sin Ω · a_i + sin(t_i Ω)/sin Ω · b_i, cos Ω = a·b / (|a||b|);
  linear (1−t_i) a_i + t_i b_i when sin Ω ≤ 1e-6 or a genome is 0, or with ``crossover="linear"``.
  k ~ U{0..D−1} (``split="any"``, the paper's raw-weight setting) or k uniform over the space's
  ``group_boundaries`` below D (``split="groups"``: over recipes, cut only between layer groups);
  ``split="auto"`` uses the groups when the space has interior boundaries.
* **Mutation** (optional): child += N(0, σ²) per gene, then clipped to the box; σ =
  ``mutation_std`` (the paper's 0.01 when evolving raw weights from scratch; 0 = none, as the
  paper from pre-trained models). ``mutation_adapt="one_fifth"`` adapts σ by Rechenberg's 1/5
  success rule, one step per told crossover child: success = its told value beats both parents'
  (a failed child fails); log σ += (1[success] − 1/5) / (1 − 1/5) / ``ADAPT_DAMPING``, σ kept in
  [``SIGMA_MIN``, ``SIGMA_MAX``] (so at a success rate of 1/5 σ holds, above it grows). Children
  asked with the old σ and told after a step still count, as in a steady-state ES.

The first candidates are the ``initial`` genomes: ``"x0"``; ``"random"`` (``archive_size`` uniform
draws); ``"seeded"`` (the space's :meth:`seed_genomes`: each source alone and the untuned merges,
see :mod:`evomerge.space.seeds`); ``"experts"`` (the problem's expert genomes, digits); or the
genomes themselves — then ``initial_random`` uniform draws. While fewer than two members are in
the archive (results outstanding), further candidates cross two initial genomes chosen uniformly
(when there are at least two), else are uniform draws in the box (or x0 + N(0, σ0²) when the box
is not finite). Outcomes should carry ``per_example``; without it the told value itself is the
score row (one "example"). Single-objective: the told value is the run's scalarisation, and the
incumbent (``best_id``, ``best_value``) is the best told value.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from evomerge.drivers.base import Candidate, DriverBase, DriverOptions, Outcome, derive_seed, outcome_failed
from evomerge.errors import ConfigError
from evomerge.state import StateError, as_float, as_int, generator_data, generator_from_data

#: The 1/5 rule's damping (log σ moves by 1/ADAPT_DAMPING on a success) and σ's bounds.
ADAPT_DAMPING = 3.0
SIGMA_MIN, SIGMA_MAX = 1e-3, 0.5


def shared_fitness(scores: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(f, z) for a score matrix (members × examples): z_j = (Σ_k s_kj)^α (0 → 1), f_i = Σ_j s_ij/z_j."""
    scores = np.asarray(scores, dtype=float)
    z = scores.sum(axis=0) ** float(alpha)
    z = np.where(z == 0, 1.0, z)
    return (scores / z).sum(axis=1), z


def attraction(scores: np.ndarray, z: np.ndarray, a: int) -> np.ndarray:
    """g(A, B) for every B: Σ_j max(0, s_Bj/z_j − s_Aj/z_j); g(A, A) = 0."""
    rel = np.asarray(scores, dtype=float) / z
    g = np.maximum(0.0, rel - rel[a]).sum(axis=1)
    g[a] = 0.0
    return g


def slerp_mix(a: np.ndarray, b: np.ndarray, t: np.ndarray, *, linear: bool = False) -> np.ndarray:
    """Per-gene interpolation a → b at fractions ``t`` with one global angle Ω between a and b."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    t = np.broadcast_to(np.asarray(t, dtype=float), a.shape)
    # Elementwise sums instead of BLAS dot: same result on every thread count, and no BLAS
    # thread start-up on a busy machine (which costs milliseconds per call).
    na, nb = float(np.sqrt(np.sum(a * a))), float(np.sqrt(np.sum(b * b)))
    if not linear and na > 0 and nb > 0:
        cos = float(np.clip(np.sum(a * b) / (na * nb), -1.0, 1.0))
        omega = float(np.arccos(cos))
        sin = float(np.sin(omega))
        if sin > 1e-6:
            return (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / sin
    return (1.0 - t) * a + t * b


class M2N2Options(DriverOptions):
    archive_size: int = Field(default=20, ge=2)
    alpha: float = Field(default=1.0, ge=0)
    attraction: bool = True
    crossover: Literal["slerp", "linear"] = "slerp"
    split: Literal["auto", "groups", "any"] = "auto"
    mutation_std: float = Field(default=0.0, ge=0)  # σ of the Gaussian mutation (genome units)
    mutation_adapt: Literal["none", "one_fifth"] = "none"
    # "x0", "random" (archive_size uniform draws), "seeded" (the space's seed genomes: sources
    # alone and untuned merges), "experts" (the problem's expert genomes, which the run puts in
    # their place: problem digits), or the genomes themselves (k × dim)
    initial: Literal["x0", "random", "seeded", "experts"] | list[list[float]] = "x0"
    initial_random: int = Field(default=0, ge=0)  # uniform draws after the initial genomes

    @field_validator("initial", mode="before")
    @classmethod
    def _genome_rows(cls, v: Any) -> Any:
        if isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and any(isinstance(r, np.ndarray) for r in v)):
            return [np.asarray(r, dtype=float).reshape(-1).tolist() for r in v]
        return v

    @field_validator("initial")
    @classmethod
    def _rectangular(cls, v: Any) -> Any:
        if isinstance(v, list) and (not v or len({len(row) for row in v}) != 1 or not v[0]):
            raise ValueError(f"expected k >= 1 genomes of one length, got rows of lengths {[len(r) for r in v]}")
        return v


class M2N2Driver(DriverBase):
    """Steady-state M2N2; see the module docstring for the maths and the conventions."""

    name = "m2n2"
    generational = False
    Options = M2N2Options

    def __init__(self, space: Any, options: M2N2Options | dict | None = None, *, n_objectives: int = 1, seed: int = 0):
        super().__init__(space, options, n_objectives=n_objectives, seed=seed)
        opts = self.options
        self.archive_size = opts.archive_size
        self.alpha = opts.alpha
        self.use_attraction = opts.attraction
        self.crossover = opts.crossover
        self.mutation_std = float(opts.mutation_std)
        self.mutation_adapt = opts.mutation_adapt
        if self.mutation_adapt != "none" and self.mutation_std <= 0:
            raise ConfigError("drivers.m2n2: mutation_adapt needs mutation_std > 0 (the starting σ)")
        self.sigma0 = float(space.sigma0)
        self.x0 = np.array(space.x0, dtype=float).reshape(self.dim)
        self._finite_box = bool(np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper)))
        bounds = sorted({int(b) for b in getattr(space, "group_boundaries", [0, self.dim])})
        interior = [b for b in bounds if 0 < b < self.dim]
        if opts.split == "groups" or (opts.split == "auto" and interior):
            self.split_points = np.array([b for b in bounds if 0 <= b < self.dim] or [0], dtype=int)
        else:
            self.split_points = None  # any index 0..D-1
        self._rng = np.random.default_rng(derive_seed(self.seed))
        self._initial, self._initial_names = self._initial_genomes(opts.initial)
        if opts.initial_random:
            if not self._finite_box:
                raise ConfigError("drivers.m2n2: initial_random needs a finite box")
            self._initial += [self._rng.uniform(self.lower, self.upper) for _ in range(opts.initial_random)]
            self._initial_names += [None] * opts.initial_random
        self._init_queue = [g.copy() for g in self._initial]
        # crossover children asked, not yet told -> their better parent's told value (the 1/5 rule)
        self._children: dict[int, float] = {}
        self.adapt_counts = [0, 0]  # (successes, trials) of the 1/5 rule
        self._genomes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._ids: list[int] = []
        self._values: list[float] = []  # each member's told value
        self.n_examples: int | None = None
        self.best_id: int | None = None
        self.best_value = -np.inf
        self.best_genome: np.ndarray | None = None

    def _initial_genomes(self, initial: Any) -> tuple[list[np.ndarray], list[str | None]]:
        """The initial genomes and their names (a seed's name, else None)."""
        if initial == "x0":
            return [self.x0.copy()], [None]
        if initial == "random":
            if not self._finite_box:
                raise ConfigError("drivers.m2n2: initial='random' needs a finite box")
            return [self._rng.uniform(self.lower, self.upper) for _ in range(self.archive_size)], [
                None
            ] * self.archive_size
        if initial == "seeded":
            seeds = getattr(self.space, "seed_genomes", None)
            if seeds is None:
                raise ConfigError(
                    f"drivers.m2n2: initial='seeded' needs a space with seed genomes (space kind parameter), "
                    f"got {type(self.space).__name__}"
                )
            named = seeds()
            rows = [self._clip(np.asarray(g, dtype=float).reshape(self.dim)) for g in named.values()]
            return rows, list(named)
        if initial == "experts":
            raise ConfigError("drivers.m2n2: initial='experts' needs a problem with expert genomes (problem: digits)")
        arr = np.asarray(initial, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != self.dim or arr.shape[0] < 1:
            raise ConfigError(f"drivers.m2n2: initial genomes must have shape (k, {self.dim}), got {arr.shape}")
        return [self._clip(row) for row in arr], [None] * arr.shape[0]

    # -- archive -------------------------------------------------------------------------------
    @property
    def archive(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(candidate id, genome, score row) for every member, slot order."""
        return [(i, g.copy(), s.copy()) for i, g, s in zip(self._ids, self._genomes, self._scores)]

    def _score_row(self, out: Outcome) -> np.ndarray:
        if out.per_example is not None:
            row = np.asarray(out.per_example, dtype=float).reshape(-1)
        else:
            row = np.asarray(out.values, dtype=float).reshape(-1)
        if not np.all(np.isfinite(row)) or np.any(row < 0):
            raise ConfigError(
                f"drivers.m2n2: per-example scores must be finite and >= 0 (candidate "
                f"{out.candidate_id} has min {np.nanmin(row) if row.size else 'n/a'}); "
                "use a scorer with values in [0, 1] such as exact_match"
            )
        if self.n_examples is None:
            self.n_examples = row.shape[0]
        elif row.shape[0] != self.n_examples:
            raise ValueError(
                f"tell: candidate {out.candidate_id} has {row.shape[0]} per-example scores, "
                f"the archive has {self.n_examples}"
            )
        return row

    def _admit(self, cid: int, genome: np.ndarray, row: np.ndarray, value: float) -> None:
        if len(self._ids) < self.archive_size:
            self._ids.append(cid)
            self._genomes.append(genome)
            self._scores.append(row)
            self._values.append(value)
            return
        f, _ = shared_fitness(np.vstack(self._scores + [row]), self.alpha)
        loser = int(np.argmin(f))
        if loser < len(self._ids):
            self._ids[loser], self._genomes[loser], self._scores[loser] = cid, genome, row
            self._values[loser] = value

    def _adapt(self, success: bool) -> None:
        """One step of the 1/5 success rule on σ."""
        self.adapt_counts[0] += int(success)
        self.adapt_counts[1] += 1
        step = (float(success) - 0.2) / 0.8 / ADAPT_DAMPING
        self.mutation_std = float(np.clip(self.mutation_std * np.exp(step), SIGMA_MIN, SIGMA_MAX))

    # -- proposals -----------------------------------------------------------------------------
    def _choose_parents(self) -> tuple[int, int]:
        scores = np.vstack(self._scores)
        m = scores.shape[0]
        f, z = shared_fitness(scores, self.alpha)
        a = int(self._rng.choice(m, p=f / f.sum())) if f.sum() > 0 else int(self._rng.integers(m))
        g = attraction(scores, z, a) if self.use_attraction else np.zeros(m)
        if g.sum() <= 0:
            g = f.copy()
            g[a] = 0.0
            if g.sum() <= 0:
                g = np.ones(m)
                g[a] = 0.0
        b = int(self._rng.choice(m, p=g / g.sum()))
        return a, b

    def _crossover(self, ga: np.ndarray, gb: np.ndarray) -> tuple[np.ndarray, int, float]:
        if self.split_points is None:
            k = int(self._rng.integers(self.dim))
        else:
            k = int(self._rng.choice(self.split_points))
        w = float(self._rng.random())
        t = np.where(np.arange(self.dim) < k, w, 1.0 - w)
        child = slerp_mix(ga, gb, t, linear=self.crossover == "linear")
        if self.mutation_std > 0:
            child = child + self._rng.normal(0.0, self.mutation_std, self.dim)
        return self._clip(child), k, w

    def _child(self) -> tuple[np.ndarray, dict[str, Any], float]:
        """A crossover child, its meta and its better parent's told value."""
        a, b = self._choose_parents()
        child, k, w = self._crossover(self._genomes[a], self._genomes[b])
        meta = {"origin": "crossover", "parents": [self._ids[a], self._ids[b]], "split": k, "w": w}
        if self.mutation_std > 0:
            meta["sigma"] = self.mutation_std
        return child, meta, max(self._values[a], self._values[b])

    def _filler(self) -> tuple[np.ndarray, dict[str, Any]]:
        # Fewer than two scored members (results still outstanding): cross two of the initial
        # genomes chosen uniformly, so parallel workers start near the sources; else explore.
        if len(self._initial) >= 2:
            a, b = self._rng.choice(len(self._initial), size=2, replace=False)
            child, k, w = self._crossover(self._initial[a], self._initial[b])
            return child, {"origin": "initial-crossover", "initial": [int(a), int(b)], "split": k, "w": w}
        if self._finite_box:
            return self._rng.uniform(self.lower, self.upper), {"origin": "random"}
        base = self._genomes[0] if self._genomes else self.x0
        return self._clip(base + self._rng.normal(0.0, self.sigma0, self.dim)), {"origin": "perturbed"}

    def ask(self, n: int) -> list[Candidate]:
        out = []
        for _ in range(int(n)):
            parent_value = None
            if self._init_queue:
                name = self._initial_names[len(self._initial) - len(self._init_queue)]
                genome, meta = self._init_queue.pop(0), {"origin": "initial"}
                if name is not None:
                    meta["seed"] = name
            elif len(self._ids) >= 2:
                genome, meta, parent_value = self._child()
            else:
                genome, meta = self._filler()
            cand = self._new_candidate(genome, **meta)
            if parent_value is not None and self.mutation_adapt != "none":
                self._children[cand.id] = parent_value
            out.append(cand)
        return out

    def tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        genomes = {c.id: self._pending.get(c.id) for c in candidates}
        self._take_pending(candidates, outcomes)
        for cand, out in zip(candidates, outcomes):
            parent_value = self._children.pop(cand.id, None)
            if outcome_failed(out, self.n_objectives):
                if parent_value is not None:
                    self._adapt(False)
                continue  # worst possible: it never enters the archive
            row = self._score_row(out)
            genome = genomes[cand.id]
            value = float(np.asarray(out.values, dtype=float).reshape(-1)[0])
            if value > self.best_value:
                self.best_value, self.best_id, self.best_genome = value, cand.id, genome.copy()
            if parent_value is not None:
                self._adapt(value > parent_value)
            self._admit(cand.id, genome, row, value)

    def state_dict(self) -> dict[str, Any]:
        state = self._base_state()
        state.update(
            rng=generator_data(self._rng),
            initial=[g.copy() for g in self._initial],
            initial_names=list(self._initial_names),
            children=dict(self._children),
            mutation_std=self.mutation_std,
            adapt_counts=list(self.adapt_counts),
            init_queue=[g.copy() for g in self._init_queue],
            genomes=[g.copy() for g in self._genomes],
            scores=[s.copy() for s in self._scores],
            ids=list(self._ids),
            values=list(self._values),
            n_examples=self.n_examples,
            best_id=self.best_id,
            best_value=self.best_value,
            best_genome=None if self.best_genome is None else self.best_genome.copy(),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = self._load_base_state(state)
        rng = generator_from_data(r.get("rng"), "driver.rng")
        genomes = r.arrays("genomes", (self.dim,))
        n_examples = r.int("n_examples", optional=True, low=1)
        scores = r.arrays("scores", (n_examples,) if n_examples is not None else None)
        ids = [as_int(v, f"driver.ids[{i}]") for i, v in enumerate(r.list("ids"))]
        if not (len(genomes) == len(scores) == len(ids) <= self.archive_size):
            raise StateError(
                f"driver: the archive has {len(genomes)} genomes, {len(scores)} score rows and {len(ids)} ids "
                f"(at most archive_size={self.archive_size} each)"
            )
        self._rng = rng
        self._initial = r.arrays("initial", (self.dim,))
        # checkpoints written before seeds and the 1/5 rule: unnamed genomes, no σ adaptation
        names = r.list("initial_names") if r.has("initial_names") else [None] * len(self._initial)
        if len(names) != len(self._initial) or not all(n is None or isinstance(n, str) for n in names):
            raise StateError(f"driver.initial_names: expected {len(self._initial)} names (strings or null)")
        self._initial_names = names
        self._children = r.int_map("children", as_float) if r.has("children") else {}
        self.mutation_std = r.float("mutation_std") if r.has("mutation_std") else float(self.options.mutation_std)
        counts = r.list("adapt_counts") if r.has("adapt_counts") else [0, 0]
        if len(counts) != 2:
            raise StateError(f"driver.adapt_counts: expected 2 counts, got {len(counts)}")
        self.adapt_counts = [as_int(v, f"driver.adapt_counts[{i}]", low=0) for i, v in enumerate(counts)]
        values = r.list("values") if r.has("values") else [-np.inf] * len(ids)
        if len(values) != len(ids):
            raise StateError(f"driver.values: expected {len(ids)} values, got {len(values)}")
        self._values = [as_float(v, f"driver.values[{i}]") for i, v in enumerate(values)]
        self._init_queue = r.arrays("init_queue", (self.dim,))
        self._genomes, self._scores, self._ids = genomes, scores, ids
        self.n_examples = n_examples
        self.best_id = r.int("best_id", optional=True)
        self.best_value = r.float("best_value")
        self.best_genome = r.array("best_genome", (self.dim,), optional=True)
