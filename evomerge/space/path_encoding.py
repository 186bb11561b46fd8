"""How a data-flow genome encodes the layer path (the ``space.encoding`` option).

The M layers of the sources are laid out in order (all of A's, then all of B's, …): layer ``g`` of
the layout is ``layout[g] = (model, layer)``. An encoding is a sequence of *positions*, each a
categorical gene: category 0 leaves the position empty, category ``k ≥ 1`` puts layout layer
``options[p][k − 1]`` on the path. The path is the chosen layers in position order.

* ``indicator`` (Akiba et al.): ``T = M·r`` positions, position ``t`` offers only layer
  ``t mod M`` — one on/off gene per slot of the layout repeated ``r`` times; 2^T paths.
* ``choice`` (structured): with ``D`` the depth of the deepest source, ``D·r`` positions;
  position ``p`` at depth ``d = p mod D`` picks one of {skip, A.d, B.d, …} (every source with a
  layer ``d``): the path keeps the sources' depth order and each depth takes at most one layer
  per repetition — a frankenmerge at equal depth, with loops when ``r > 1``. For two sources
  (1 + 2)^(D·r) paths instead of 2^(2·D·r): for the paper's 2 × 32 layers and r = 3, 96 genes
  instead of 192.

Gene values follow :mod:`evomerge.space.base`'s categorical convention (category ``k`` of ``K``
is the interval ``(k/K, (k+1)/K]``), so ``indicator`` is exactly "on iff ``x > 0.5``".
:meth:`PathEncoding.encode` writes an order onto the earliest positions that hold it (the
inverse of :meth:`PathEncoding.decode` on its image); ``on_value`` / ``off_value`` set where a
two-category gene is written (``0.5 ± indicator_margin``), other genes get their category's
centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evomerge.errors import ConfigError
from evomerge.space.base import category_of, category_value


class PathEncoding:
    """Positions with the layout layers each offers; see the module docstring."""

    kind = "path"

    def __init__(self, layout: Sequence[tuple[str, int]], options: list[list[int]], names: list[str], period: int):
        self.layout = list(layout)
        self.options = options
        self.names = names
        self.period = period  # positions per repetition (crossover points fall between repetitions)
        self.n = len(options)
        self.categories = [1 + len(o) for o in options]
        self.off_value = 0.25
        self.on_value = 0.75

    def value(self, p: int, c: int) -> float:
        """The gene value written for category ``c`` at position ``p``."""
        k = self.categories[p]
        if k == 2:
            return self.on_value if c == 1 else self.off_value
        return category_value(c, k)

    def chosen(self, genes: np.ndarray) -> list[tuple[int, int]]:
        """``[(position, category)]`` of the non-empty positions, in position order."""
        return [(p, c) for p in range(self.n) for c in [category_of(genes[p], self.categories[p])] if c > 0]

    def decode(self, genes: np.ndarray) -> list[int]:
        """The layout indices of the path the genes choose, in order."""
        return [self.options[p][c - 1] for p, c in self.chosen(genes)]

    def empty(self) -> np.ndarray:
        return np.array([self.value(p, 0) for p in range(self.n)], dtype=float)

    def encode(self, order: Sequence[int], *, first_step: int = 0) -> np.ndarray:
        """Genes choosing ``order`` (layout indices), each on the earliest free position that
        offers it; a step that does not fit raises ConfigError (``first_step`` numbers the steps
        in the message, e.g. 1 when a fixed first layer precedes them)."""
        genes = self.empty()
        p = 0
        for k, g in enumerate(order):
            while p < self.n and g not in self.options[p]:
                p += 1
            if p >= self.n:
                m, l = self.layout[g]
                repeats = self.n // self.period
                raise ConfigError(
                    f"data-flow recipe: path step {k + first_step} ({m}.{l}) does not fit in {repeats} repetitions of the layout"
                )
            genes[p] = self.value(p, 1 + self.options[p].index(g))
            p += 1
        return genes

    def fallback(self, genes: np.ndarray) -> int:
        """A non-empty path for genes that choose nothing (no fixed ends): the first layer offered
        by the gene closest to choosing one."""
        return self.options[int(np.argmax(genes[: self.n]))][0]


def indicator_encoding(layout: Sequence[tuple[str, int]], repeats: int) -> PathEncoding:
    M = len(layout)
    options = [[t % M] for t in range(M * repeats)]
    names = [f"r{t // M}/{m}.{l}/on" for t in range(M * repeats) for (m, l) in [layout[t % M]]]
    enc = PathEncoding(layout, options, names, M)
    enc.kind = "indicator"
    return enc


def choice_encoding(layout: Sequence[tuple[str, int]], source_layers: dict[str, int], repeats: int) -> PathEncoding:
    index = {ml: g for g, ml in enumerate(layout)}
    D = max(source_layers.values())
    options, names = [], []
    for rep in range(repeats):
        for d in range(D):
            models = [m for m, n in source_layers.items() if d < n]
            options.append([index[(m, d)] for m in models])
            names.append(f"r{rep}/d{d}/" + "|".join(["skip", *models]))
    enc = PathEncoding(layout, options, names, D)
    enc.kind = "choice"
    return enc


def build_encoding(
    kind: str, layout: Sequence[tuple[str, int]], source_layers: dict[str, int], repeats: int, margin: float
) -> PathEncoding:
    enc = (
        indicator_encoding(layout, repeats) if kind == "indicator" else choice_encoding(layout, source_layers, repeats)
    )
    enc.off_value, enc.on_value = 0.5 - margin, 0.5 + margin
    return enc
