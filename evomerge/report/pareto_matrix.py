"""The Pareto front of three or more objectives, readable on paper: a scatter matrix.

Below the diagonal, every pair of objectives: all ok candidates (grey) and the members of the
front in the full k-objective sense (red, so a red point may look dominated in one projection:
it wins on an objective not shown there). On the diagonal, the distribution of each objective,
the front's values in red. Above it, the front as parallel coordinates — one line per member
across all objectives, the best trade-offs readable at a glance — and the front's size and
hypervolume (against the origin, when every objective is maximised and non-negative).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evomerge.pareto import hypervolume, nondominated
from evomerge.report.common import PAGE_WIDTH, finite, plt, save

MAX_OBJECTIVES = 5


def front_points(
    records: list[dict], names: list[str], directions: dict[str, str]
) -> tuple[np.ndarray, np.ndarray, list]:
    """(points N × k of the ok records scoring every objective, mask of the front, their ids)."""
    pts, ids = [], []
    for r in records:
        o = r.get("objectives")
        if r.get("status") == "ok" and isinstance(o, dict) and all(n in o for n in names):
            row = [finite(o[n]) for n in names]
            if all(np.isfinite(row)):
                pts.append(row)
                ids.append(r.get("id"))
    arr = np.asarray(pts, dtype=float).reshape(-1, len(names))
    signs = np.array([-1.0 if directions.get(n) == "minimize" else 1.0 for n in names])
    mask = np.zeros(len(arr), dtype=bool)
    if len(arr):
        mask[nondominated(arr * signs)] = True
    return arr, mask, ids


def plot_pareto_matrix(records: list[dict], names: list[str], directions: dict[str, str], out: Path) -> Path | None:
    names = list(names)[:MAX_OBJECTIVES]
    k = len(names)
    if k < 3:
        return None
    pts, front, ids = front_points(records, names, directions)
    if not len(pts):
        return None
    unit = pts.min() >= 0 and pts.max() <= 1
    lims = [(-0.03, 1.03) if unit else _pad(pts[:, j]) for j in range(k)]
    cell = min(3.0, (PAGE_WIDTH - 0.6) / k)
    fig = plt.figure(figsize=(cell * k + 0.6, cell * k))
    gs = fig.add_gridspec(k, k, hspace=0.3, wspace=0.3)
    for i in range(k):
        for j in range(i + 1):
            ax = fig.add_subplot(gs[i, j])
            if i == j:
                bins = np.linspace(*lims[j], 21)
                ax.hist(pts[:, j], bins=bins, color="0.7", label="all")
                ax.hist(pts[front, j], bins=bins, color="C3", alpha=0.85, label="front")
                ax.set_yticks([])
                ax.set_title(f"{names[j]} ({directions.get(names[j], 'maximize')})", fontsize=9)
            else:
                ax.scatter(pts[~front, j], pts[~front, i], s=8, color="0.6", alpha=0.4)
                ax.scatter(pts[front, j], pts[front, i], s=22, color="C3", edgecolor="k", lw=0.4, zorder=3)
                ax.set_ylim(*lims[i])
            ax.set_xlim(*lims[j])
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if i == k - 1:
                ax.set_xlabel(names[j], fontsize=9)
            if j == 0 and i:
                ax.set_ylabel(names[i], fontsize=9)
    _parallel(fig.add_subplot(gs[0, 1:]), pts[front], [ids[n] for n in np.flatnonzero(front)], names, lims, unit)
    note = fig.add_subplot(gs[1, k - 1])
    note.axis("off")
    signs = np.array([-1.0 if directions.get(n) == "minimize" else 1.0 for n in names])
    hv = ""
    if np.all(signs > 0) and pts[front].min() >= 0:
        hv = f"\nhypervolume {hypervolume(pts[front], np.zeros(k)):.3g}\n(reference: the origin)"
    note.text(
        0.05,
        0.5,
        f"{len(pts)} candidates\n{int(front.sum())} on the front{hv}",
        fontsize=10,
        va="center",
        transform=note.transAxes,
    )
    fig.suptitle(f"Pareto front over {k} objectives: red = non-dominated in all {k}", fontsize=11)
    return save(fig, out)


def _pad(col: np.ndarray) -> tuple[float, float]:
    lo, hi = float(col.min()), float(col.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def _parallel(ax, front: np.ndarray, ids: list, names: list[str], lims, unit: bool) -> None:
    """One line per front member across the objectives (each axis scaled to its own range)."""
    k = len(names)
    lo = np.array([a for a, _ in lims])
    y = front if unit else (front - lo) / (np.array([b for _, b in lims]) - lo)
    order = np.argsort(-front[:, 0])
    cmap = plt.get_cmap("plasma")
    for rank, n in enumerate(order):
        ax.plot(range(k), y[n], "-o", ms=3, lw=1.2, color=cmap(0.85 * rank / max(1, len(order) - 1)), alpha=0.85)
        if len(order) <= 12:
            ax.annotate(f"#{ids[n]}", (k - 1, y[n, -1]), textcoords="offset points", xytext=(4, 0), fontsize=7)
    ax.set_xticks(range(k), names, fontsize=9)
    ax.set_xlim(-0.1, k - 1 + 0.35)
    ax.set_ylim(-0.05, 1.05)
    if unit:
        ax.set_yticks([0, 0.5, 1.0])
        ax.set_ylabel("score", fontsize=8)
    else:
        ax.set_yticks([0, 1], ["min", "max"])
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(f"the front's {len(front)} members across all objectives", fontsize=9)
