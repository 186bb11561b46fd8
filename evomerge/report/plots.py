"""The report's search figures, each drawn from log records alone (no models are loaded).

- :func:`plot_progress`: every evaluation's objective value against its evaluation number, and
  the best-so-far curve, per objective; several runs (drivers) overlay for comparison.
- :func:`plot_stage_progress`: the same for a staged run (sequential PS+DFS, see
  :mod:`evomerge.report.stages`): one colour and one best-so-far curve per stage, the stage
  boundaries marked, each stage's best starred, and the previous stages' best carried on as a
  dotted line, so a later stage's gain (or none) can be read off.
- :func:`plot_pareto`: all ok candidates in the plane of two objectives; the non-dominated ones
  highlighted and joined by the staircase that bounds what they dominate (:func:`front_staircase`),
  with optional reference points (base, experts) and overlaid point sets (an untuned grid).
  Three or more objectives: :mod:`evomerge.report.pareto_matrix`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evomerge.pareto import hypervolume, nondominated
from evomerge.report.common import DPI, PAGE_WIDTH, finite, plt, save
from evomerge.report.stages import Stage


def _series(records: list[dict], name: str, offset: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """(evaluation numbers, values, records) of the ok records scoring ``name``; numbers count
    every record (failed ones too) from ``offset + 1``."""
    xs, ys, rs = [], [], []
    for i, r in enumerate(records):
        o = r.get("objectives")
        if r.get("status") == "ok" and isinstance(o, dict) and name in o:
            xs.append(offset + i + 1)
            ys.append(finite(o[name]))
            rs.append(r)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), rs


def _best_so_far(ys: np.ndarray, sign: float) -> np.ndarray:
    return sign * np.maximum.accumulate(sign * np.nan_to_num(ys, nan=-np.inf * sign))


def plot_progress(
    runs: dict[str, list[dict]], objective_names: list[str], directions: dict[str, str], out: Path
) -> Path:
    n = max(1, len(objective_names))
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH, (3.9 if cols < 3 else 3.3) * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, name in zip(axes.flat, objective_names):
        sign = -1.0 if directions.get(name) == "minimize" else 1.0
        for label, records in runs.items():
            xs, ys, _ = _series(records, name)
            if not len(xs):
                continue
            best = _best_so_far(ys, sign)
            pts = ax.scatter(xs, ys, s=8, alpha=0.35)
            ax.plot(xs, best, lw=2, color=pts.get_facecolor()[0][:3], label=f"{label} (best {best[-1]:.3g})")
        ax.set_xlabel("evaluation")
        ax.set_ylabel(f"{name} ({directions.get(name, 'maximize')})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("objective vs evaluations (dots: candidates, line: best so far)")
    fig.tight_layout()
    return save(fig, out)


def stage_spans(stages: list[Stage]) -> list[tuple[int, int]]:
    """(first, last) evaluation number of each stage, numbered across the stages: stage k's
    record i is number first_k + i (for one log, its line number). A finished stage spans its
    records; the running stage (the last with records) and those not started yet span their
    budget (``max_evals``, at least 1), so the page shows what is left."""
    started = max((k for k, st in enumerate(stages) if st.records), default=-1)
    spans, first = [], 1
    for k, st in enumerate(stages):
        width = len(st.records) if k < started else max(len(st.records), st.max_evals or 0, 1)
        spans.append((first, first + width - 1))
        first += width
    return spans


def plot_stage_progress(stages: list[Stage], objective_names: list[str], directions: dict[str, str], out: Path) -> Path:
    """One panel per objective; stage k's evaluations are numbered after stage k − 1's."""
    n = max(1, len(objective_names))
    fig, axes = plt.subplots(n, 1, figsize=(PAGE_WIDTH, 3.6 * n), squeeze=False)
    for ax, name in zip(axes[:, 0], objective_names):
        sign = -1.0 if directions.get(name) == "minimize" else 1.0
        carried = None  # the best of the stages so far, carried into the next
        spans = stage_spans(stages)
        for k, (st, (first, last)) in enumerate(zip(stages, spans)):
            color = f"C{k}"
            lo, hi = first - 0.5, last + 0.5
            ax.axvspan(lo, hi, color=color, alpha=0.06, lw=0)
            if k:
                ax.axvline(lo, color="k", ls="--", lw=1)
            xs, ys, rs = _series(st.records, name, first - 1)
            ax.text(
                (lo + hi) / 2,
                1.01,
                f"{st.label}: {len(st.records)}{f' / {st.max_evals}' if st.max_evals else ''} evaluations",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=9,
                color=color,
                fontweight="bold",
            )
            if carried is not None:
                ax.hlines(carried, lo, hi, colors="0.35", linestyles=":", lw=1.3)
            if len(xs):
                best = _best_so_far(ys, sign)
                ax.scatter(xs, ys, s=9, alpha=0.35, color=color)
                ax.plot(xs, best, lw=2, color=color, drawstyle="steps-post")
                i = int(np.nanargmax(sign * np.nan_to_num(ys, nan=-np.inf)))
                ax.scatter([xs[i]], [ys[i]], s=160, marker="*", color=color, edgecolor="k", lw=0.6, zorder=5)
                ax.annotate(
                    f"best of {st.label}: {ys[i]:.3g} (#{rs[i].get('id')})",
                    (xs[i], ys[i]),
                    textcoords="offset points",
                    xytext=(-8, 7),
                    ha="right",
                    fontsize=8,
                    color=color,
                    fontweight="bold",
                )
                stage_best = best[-1]
                if np.isfinite(stage_best):
                    carried = stage_best if carried is None else sign * max(sign * carried, sign * stage_best)
        ax.set_xlim(0.5, spans[-1][1] + 0.5)
        lo_y, hi_y = ax.get_ylim()
        ax.set_ylim(lo_y, hi_y + 0.12 * (hi_y - lo_y))  # room for the stars' labels
        ax.set_xlabel("evaluation (numbered across stages)")
        ax.set_ylabel(f"{name} ({directions.get(name, 'maximize')})")
        ax.grid(alpha=0.3)
    axes[-1, 0].plot([], [], ":", color="0.35", label="best of the earlier stages")
    axes[-1, 0].plot([], [], "-", color="0.2", lw=2, label="best so far within a stage")
    axes[-1, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle("search progress by stage (dots: candidates; ★ the best of each stage)", y=0.995)
    fig.tight_layout()
    return save(fig, out)


def front_staircase(points: np.ndarray, signs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-dominated rows of ``points`` (N × 2; ``signs`` ±1 per column, +1 = maximise) in
    order of the first objective, and the vertices of the boundary of the region they dominate.

    In maximised coordinates, with the front sorted so that x_1 < x_2 < … (and so y_1 > y_2 > …),
    the region ⋃_i [−∞, x_i] × [−∞, y_i] is bounded by the staircase
    (x_1, y_1) → (x_1, y_2) → (x_2, y_2) → (x_2, y_3) → … → (x_n, y_n): each step drops at the
    point, never through the empty corner (x_{i+1}, y_i) that no member attains.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    signs = np.asarray(signs, dtype=float)
    q = p * signs
    q = q[nondominated(q)] if len(q) else q
    q = np.unique(q, axis=0)  # duplicates draw one vertex; sorted by x, then y
    q = q[np.lexsort((-q[:, 1], q[:, 0]))]
    steps = [q[0]] if len(q) else []
    for a, b in zip(q[:-1], q[1:]):
        steps += [np.array([a[0], b[1]]), b]
    stairs = np.asarray(steps, dtype=float).reshape(-1, 2)
    return q * signs, stairs * signs


def plot_pareto(
    records: list[dict],
    objective_names: list[str],
    directions: dict[str, str],
    out: Path,
    *,
    references: dict[str, tuple[float, float]] | None = None,
    overlay: dict[str, list[tuple[float, float]]] | None = None,
    title: str | None = None,
    dpi: int = DPI,
) -> Path | None:
    """Every ok candidate in the plane of the first two objectives; the non-dominated ones
    highlighted, labelled with their candidate ids and joined by the boundary of the region they
    dominate. ``references``: named points drawn as landmarks (e.g. the base and the experts);
    ``overlay``: other named point sets drawn with their own fronts (e.g. an untuned grid). When
    both objectives are maximised and non-negative, the legend gives the front's hypervolume
    against (0, 0)."""
    if len(objective_names) < 2:
        return None
    a, b = objective_names[:2]
    pts, ids = [], []
    for r in records:
        o = r.get("objectives") or {}
        if r.get("status") == "ok" and a in o and b in o:
            pts.append((finite(o[a]), finite(o[b])))
            ids.append(r["id"])
    if not pts:
        return None
    pts_arr = np.asarray(pts)
    ids_arr = np.asarray(ids)
    signs = np.array([-1.0 if directions.get(n) == "minimize" else 1.0 for n in (a, b)])
    rows = np.all(np.isfinite(pts_arr), axis=1)
    fin_pts, fin_ids = pts_arr[rows], ids_arr[rows]
    front_mask = np.zeros(len(fin_pts), dtype=bool)
    front_mask[nondominated(fin_pts * signs)] = True
    front_pts, stairs = front_staircase(fin_pts[front_mask], signs)

    fig, ax = plt.subplots(figsize=(7.2, 7.0))
    ax.scatter(
        fin_pts[~front_mask, 0],
        fin_pts[~front_mask, 1],
        s=12,
        color="0.6",
        alpha=0.45,
        label=f"evaluated, dominated ({int((~front_mask).sum())})",
    )
    for k, (label, opts) in enumerate((overlay or {}).items()):
        o_arr = np.asarray(opts, dtype=float).reshape(-1, 2)
        o_arr = o_arr[np.all(np.isfinite(o_arr), axis=1)]
        if not len(o_arr):
            continue
        color = f"C{k}"
        o_front, o_stairs = front_staircase(o_arr, signs)
        ax.scatter(o_arr[:, 0], o_arr[:, 1], s=22, marker="x", color=color, alpha=0.7)
        ax.plot(o_stairs[:, 0], o_stairs[:, 1], "--", color=color, lw=1.2)
        ax.plot(
            [],
            [],
            "--x",
            color=color,
            lw=1.2,  # one legend entry for the points and their front
            label=f"{label} ({len(o_arr)}; front {len(o_front)}{_hv_label(o_front, signs)})",
        )
    ax.plot(stairs[:, 0], stairs[:, 1], "-", color="C3", lw=1.6, zorder=3)
    ax.scatter(
        fin_pts[front_mask, 0],
        fin_pts[front_mask, 1],
        s=36,
        color="C3",
        edgecolor="k",
        linewidth=0.5,
        zorder=4,
        label=f"Pareto front ({int(front_mask.sum())}){_hv_label(front_pts, signs)}",
    )
    labelled: set[tuple[float, float]] = set()
    if len(front_pts) <= 25:
        for (x, y), cid in zip(fin_pts[front_mask], fin_ids[front_mask]):
            if (x, y) not in labelled:  # equal score pairs: the first candidate's id only
                labelled.add((x, y))
                ax.annotate(f"#{cid}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color="C3")
    markers = ["s", "*", "D", "^", "v", "P"]
    every_x = np.array([fin_pts[:, 0].min(), fin_pts[:, 0].max()]) if len(fin_pts) else np.zeros(0)
    for k, (label, (x, y)) in enumerate((references or {}).items()):
        ax.scatter(
            [x],
            [y],
            s=90,
            marker=markers[k % len(markers)],
            color="k",
            facecolor="w" if k else "k",
            zorder=5,
            label=f"{label} ({x:.2f}, {y:.2f})",
        )
        right = len(every_x) and x > np.nanmean(every_x)  # label inward, away from the frame
        ax.annotate(
            label,
            (x, y),
            textcoords="offset points",
            xytext=(-7 if right else 7, -11),
            fontsize=8,
            ha="right" if right else "left",
        )
    ax.set_xlabel(f"{a} ({directions.get(a, 'maximize')})")
    ax.set_ylabel(f"{b} ({directions.get(b, 'maximize')})")
    every = np.vstack(
        [fin_pts]
        + [np.asarray(v, dtype=float).reshape(-1, 2) for v in (overlay or {}).values()]
        + [np.asarray(list((references or {}).values()), dtype=float).reshape(-1, 2)]
    )
    every = every[np.all(np.isfinite(every), axis=1)]
    if len(every) and every.min() >= 0 and every.max() <= 1:  # scores: show the whole unit square
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    # below the axes, so that neither the points nor the plot's width suffer
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    ax.set_title(title or f"Pareto front: {a} vs {b}", fontsize=10)
    fig.tight_layout()
    return save(fig, out, dpi)


def _hv_label(front: np.ndarray, signs: np.ndarray) -> str:
    if len(front) == 0 or np.any(signs < 0) or np.any(front < 0):
        return ""
    return f", HV {hypervolume(front, np.zeros(2)):.3f}"
