"""The report's figures, each drawn from log records alone (no models are loaded).

- :func:`plot_progress`: every evaluation's objective value against its evaluation number, and
  the best-so-far curve, per objective; several runs (drivers) overlay for comparison.
- :func:`plot_pareto`: all ok candidates in the plane of two objectives; the non-dominated ones
  highlighted and joined by the staircase that bounds what they dominate (:func:`front_staircase`),
  with optional reference points (base, experts) and overlaid point sets (an untuned grid).
- :func:`plot_recipe_heatmap`: the best parameter-space recipe as a (model × parameter) × layer
  matrix — each value resolved per layer with mergekit's gradient rule (a list [v_0 … v_k] is
  interpolated linearly at x = ℓ / (L − 1)).
- :func:`plot_layer_path`: a data-flow recipe's path: position on the path → (model, layer), with
  the input scale of each position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evomerge.pareto import nondominated  # noqa: E402
from evomerge.runs.store import as_float  # noqa: E402


def _finite(v: Any) -> float:
    try:
        f = as_float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def plot_progress(
    runs: dict[str, list[dict]], objective_names: list[str], directions: dict[str, str], out: Path
) -> Path:
    n = max(1, len(objective_names))
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.8), squeeze=False)
    for ax, name in zip(axes[0], objective_names):
        sign = -1.0 if directions.get(name) == "minimize" else 1.0
        for label, records in runs.items():
            xs, ys = [], []
            for i, r in enumerate(records):
                if r.get("status") == "ok" and r.get("objectives") and name in r["objectives"]:
                    xs.append(i + 1)
                    ys.append(_finite(r["objectives"][name]))
            if not xs:
                continue
            ys_arr = np.asarray(ys)
            best = sign * np.maximum.accumulate(sign * np.nan_to_num(ys_arr, nan=-np.inf * sign))
            pts = ax.scatter(xs, ys, s=8, alpha=0.35)
            ax.plot(xs, best, lw=2, color=pts.get_facecolor()[0][:3], label=f"{label} (best {best[-1]:.3g})")
        ax.set_xlabel("evaluation")
        ax.set_ylabel(f"{name} ({directions.get(name, 'maximize')})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("objective vs evaluations (dots: candidates, line: best so far)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


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
    dpi: int = 110,
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
            pts.append((_finite(o[a]), _finite(o[b])))
            ids.append(r["id"])
    if not pts:
        return None
    pts_arr = np.asarray(pts)
    ids_arr = np.asarray(ids)
    signs = np.array([-1.0 if directions.get(n) == "minimize" else 1.0 for n in (a, b)])
    finite = np.all(np.isfinite(pts_arr), axis=1)
    fin_pts, fin_ids = pts_arr[finite], ids_arr[finite]
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
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def _hv_label(front: np.ndarray, signs: np.ndarray) -> str:
    from evomerge.pareto import hypervolume

    if len(front) == 0 or np.any(signs < 0) or np.any(front < 0):
        return ""
    return f", HV {hypervolume(front, np.zeros(2)):.3f}"


def resolve_over_layers(value: Any, num_layers: int) -> np.ndarray | None:
    """A parameter value per layer: scalar → constant; gradient list → linear interpolation at
    ℓ/(L−1); ``[{filter, value}]`` → its filter-less entry (the fallback), else the first."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.full(num_layers, float(value))
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        if len(value) == 1:
            return np.full(num_layers, float(value[0]))
        x = np.linspace(0.0, 1.0, num_layers) if num_layers > 1 else np.zeros(1)
        return np.interp(x, np.linspace(0.0, 1.0, len(value)), np.asarray(value, dtype=float))
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        fallback = [v for v in value if not v.get("filter")] or value
        return resolve_over_layers(fallback[0].get("value"), num_layers)
    return None


def recipe_matrix(recipe: dict, num_layers: int | None) -> tuple[np.ndarray, list[str], int] | None:
    models = recipe.get("models") or []
    rows, labels = [], []
    if num_layers is None:
        lengths = [
            len(v)
            for m in models
            for v in (m.get("parameters") or {}).values()
            if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)
        ]
        num_layers = max(lengths) if lengths else 1
    for m in models:
        name = Path(str(m.get("model", "?"))).name
        for key, value in sorted((m.get("parameters") or {}).items()):
            row = resolve_over_layers(value, num_layers)
            if row is not None:
                rows.append(row)
                labels.append(f"{name} · {key}")
    if not rows:
        return None
    return np.vstack(rows), labels, num_layers


def plot_recipe_heatmap(recipe: dict, num_layers: int | None, out: Path) -> Path | None:
    got = recipe_matrix(recipe, num_layers)
    if got is None:
        return None
    mat, labels, L = got
    fig, ax = plt.subplots(figsize=(max(4.5, 0.5 * L + 3), 0.45 * len(labels) + 1.6))
    im = ax.imshow(mat, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xticks(range(L), [str(i) for i in range(L)], fontsize=7)
    ax.set_xlabel("layer")
    if L * len(labels) <= 160:
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(f"best recipe: {recipe.get('merge_method', '?')} parameters per layer")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def layer_path(recipe: dict) -> list[tuple[str, int, float]] | None:
    """[(model, layer, input scale)] of a data-flow recipe dict, whatever its exact spelling:
    a ``path`` / ``layers`` list of ``{model, layer, scale}`` mappings or ``[model, layer, scale]``."""
    steps = recipe.get("path") or recipe.get("layers") or recipe.get("layer_path")
    if not isinstance(steps, list) or not steps:
        return None
    out = []
    for s in steps:
        if isinstance(s, dict):
            model = s.get("model", s.get("source", "?"))
            layer = s.get("layer", s.get("index"))
            scale = s.get("scale", 1.0)
        elif isinstance(s, (list, tuple)) and len(s) >= 2:
            model, layer = s[0], s[1]
            scale = s[2] if len(s) > 2 else 1.0
        else:
            return None
        if layer is None:
            return None
        out.append((str(model), int(layer), float(scale if scale is not None else 1.0)))
    return out


def plot_layer_path(path: list[tuple[str, int, float]], out: Path) -> Path:
    models = sorted({m for m, _, _ in path}, key=[m for m, _, _ in path].index)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(path) + 2), 3.8))
    xs = np.arange(len(path))
    ax.plot(xs, [l for _, l, _ in path], color="0.7", lw=1, zorder=1)
    for k, m in enumerate(models):
        idx = [i for i, (mm, _, _) in enumerate(path) if mm == m]
        ax.scatter(
            idx,
            [path[i][1] for i in idx],
            s=[30 + 40 * abs(path[i][2]) for i in idx],
            color=f"C{k}",
            label=Path(m).name,
            zorder=2,
        )
    for i, (_, l, sc) in enumerate(path):
        if abs(sc - 1.0) > 1e-6:
            ax.annotate(f"×{sc:.2f}", (i, l), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=6)
    ax.set_xlabel("position on the inference path")
    ax.set_ylabel("source layer")
    ax.set_title(f"data-flow path ({len(path)} layers; marker size ~ input scale)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
