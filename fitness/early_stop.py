"""Early stopping by racing: stop a candidate once a confidence bound shows it cannot win.

The candidate is scored on growing prefixes of the fixed shuffled calibration split, of sizes
``n_1 = min_examples``, ``n_{j+1} = ⌈growth · n_j⌉`` (capped at the split size N). After each
stage but the last, an upper confidence bound U on its fitness is compared with ``must_beat``
(the incumbent's fitness, or a threshold from the caller); ``U < must_beat`` stops it.

Bounds. Per-example scores lie in [0, 1]. The calibration split is a fixed finite population of
N examples and the quantity compared is the candidate's mean over all of it; the seeded shuffle
makes a prefix of n a sample *without replacement*, so the finite-population (Serfling) forms
apply and shrink to 0 at n = N:

* Hoeffding–Serfling (Bardenet & Maillard 2015, Cor. 2.5): with ρ_n = 1 − (n−1)/N for
  n ≤ N/2 and (1 − n/N)(1 + 1/n) above, ``P(μ − μ̂_n ≥ ε) ≤ exp(−2nε²/ρ_n)``, so
  ``ε = sqrt(ρ_n ln(1/δ) / (2n))``.
* empirical Bernstein–Serfling (ibid., Thm 3): ``ε = σ̂_n sqrt(2 ρ_n ln(5/δ) / n) + κ ln(5/δ) / n``,
  κ = 7/3 + 3/√2, σ̂_n the empirical standard deviation — tighter when scores barely vary
  (accuracy near 0 or 1) and n is large; looser on short prefixes.

Fitness is the weighted sum ``F = Σ_k w_k s_k m_k`` of the objectives' means (s_k = ±1 for
maximise/minimise), so ``U = Σ_k w_k s_k · (UCB_k if w_k s_k > 0 else LCB_k)``. Confidence is
split by a union bound over objectives and looks: each bound uses ``δ = (1 − confidence) /
(K · L)`` with K objectives and L looks, so a candidate whose true fitness is ≥ must_beat is
stopped with probability at most 1 − confidence.

What the search sees. A stopped candidate reports its mean on the evaluated prefix (flagged
``stopped_early``; the bound is kept in ``FitnessResult.upper_bound``). Since μ̂ ≤ U < must_beat, that
value is always below the incumbent — a stopped candidate can never be taken as the new best —
and it is the unbiased-as-possible estimate a rank-based driver (CMA-ES) needs to order the
losers among themselves, unlike U (which rewards short prefixes) or a sentinel like −∞ (which
throws the ranking away). Drivers that use per-example vectors (M2N2) see only the prefix's ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

KAPPA = 7.0 / 3.0 + 3.0 / math.sqrt(2.0)


def stage_sizes(n_total: int, min_examples: int, growth: float) -> list[int]:
    """Prefix sizes ``[n_1, n_2, …, N]``; the last is always the whole split."""
    if n_total <= 0:
        return []
    sizes = [min(min_examples, n_total)]
    while sizes[-1] < n_total:
        sizes.append(min(n_total, max(sizes[-1] + 1, math.ceil(sizes[-1] * growth))))
    return sizes


def _rho(n: int, n_total: int) -> float:
    if n <= n_total / 2:
        return 1.0 - (n - 1) / n_total
    return (1.0 - n / n_total) * (1.0 + 1.0 / n)


def radius(scores: Sequence[float], n_total: int, delta: float, kind: str = "hoeffding") -> float:
    """Half-width ε such that the population mean lies within μ̂_n ± ε one-sidedly w.p. ≥ 1 − δ."""
    n = len(scores)
    if n == 0:
        return math.inf
    if n >= n_total:
        return 0.0  # the whole population is seen: its mean is known exactly
    rho = _rho(n, n_total)
    if kind == "hoeffding":
        return math.sqrt(rho * math.log(1.0 / delta) / (2.0 * n))
    if kind == "bernstein":
        mean = sum(scores) / n
        sd = math.sqrt(max(0.0, sum((s - mean) ** 2 for s in scores) / n))
        log_term = math.log(5.0 / delta)
        return sd * math.sqrt(2.0 * rho * log_term / n) + KAPPA * log_term / n
    raise ValueError(f"unknown bound {kind!r}; known: hoeffding, bernstein")


def mean_bounds(scores: Sequence[float], n_total: int, delta: float, kind: str = "hoeffding") -> tuple[float, float]:
    """(LCB, UCB) on the mean of [0, 1] scores over the whole population, clipped to [0, 1]."""
    if not scores:
        return 0.0, 1.0
    mean = sum(scores) / len(scores)
    eps = radius(scores, n_total, delta, kind)
    return max(0.0, mean - eps), min(1.0, mean + eps)


def fitness_upper_bound(terms: Sequence[tuple[float, Sequence[float], int]], delta: float, kind: str) -> float:
    """U for ``F = Σ c_k m_k`` given ``(c_k, scores_k, N_k)`` with c_k = w_k s_k."""
    total = 0.0
    for coef, scores, n_total in terms:
        lcb, ucb = mean_bounds(scores, n_total, delta, kind)
        total += coef * (ucb if coef > 0 else lcb)
    return total


def per_look_delta(confidence: float, n_objectives: int, n_looks: int) -> float:
    return (1.0 - confidence) / (max(1, n_objectives) * max(1, n_looks))
