"""Pictures of a recipe, read as plain dicts (no recipe class is imported, so the report does not
depend on where they live and draws any spelling the merge engine accepts).

- :func:`recipe_panels` / :func:`plot_recipe_heatmap`: a parameter-space recipe as one heatmap
  per parameter, a row per model, a column per group — embeddings, every layer, head (final norm
  and LM head). Each cell is the value the merge engine gives a representative tensor of that
  column, by mergekit's rules: a scalar everywhere; a gradient ``[v_0 … v_k]`` interpolated at
  x = ℓ / (L − 1) (x = 1 for one layer; at embeddings / head only with
  ``options.layerless_gradient`` ``start`` (x = 0 / 0) or ``ends`` (x = 0 / 1), else the cell is
  blank: the merge refuses it);
  ``{filter, value}`` entries: the first whose filter is a substring of the tensor name, the
  unfiltered one as fallback. Filters naming a part of a layer (``self_attn``, ``mlp``) get rows
  of their own. Layer-group boundaries (``meta.json`` space ``layer_boundaries``) are drawn.
- :func:`layer_path` / :func:`plot_layer_path`: a data-flow recipe's path — which layer of which
  source runs at each position, and with what input scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import TwoSlopeNorm

from evomerge.merge.parameters import layerless_position
from evomerge.report.common import PAGE_WIDTH, finite, plt, save, short_name

#: Representative tensor names of each column, for the families the merge engine supports.
EMBED_TENSORS = ("model.embed_tokens.weight", "transformer.wte.weight", "transformer.wpe.weight")
HEAD_TENSORS = ("lm_head.weight", "model.norm.weight", "transformer.ln_f.weight")


#: panels in this order (the log sorts keys), then any other parameter
PARAM_ORDER = ("weight", "density", "t", "gamma", "epsilon", "lambda")


def _layer_tensors(layer: int) -> tuple[str, ...]:
    return (f"model.layers.{layer}.weight", f"transformer.h.{layer}.weight")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _gradient(values: list, x: float) -> float:
    s = x * (len(values) - 1)
    i = int(s)
    j = min(len(values) - 1, i + 1)
    return (1 - (s - i)) * finite(values[i]) + (s - i) * finite(values[j])


def setting_value(setting: Any, names: tuple[str, ...], x: float | None) -> float | None:
    """The value of one parameter setting for the first of ``names`` an entry matches (``x``:
    the tensor's depth for a gradient, None for a tensor without a layer index → NaN)."""
    if isinstance(setting, dict) and "value" in setting:
        setting = [setting]
    if _number(setting):
        return float(setting)
    if isinstance(setting, list) and setting and all(_number(v) for v in setting):
        return float("nan") if x is None else _gradient(setting, x)
    if isinstance(setting, list) and setting and all(isinstance(e, dict) for e in setting):
        for name in names:  # a specific entry for one of the family's names wins over the fallback
            for e in setting:
                f = e.get("filter")
                if f and str(f) in name:
                    return setting_value(e.get("value"), names, x)
        for e in setting:
            if not e.get("filter"):
                return setting_value(e.get("value"), names, x)
    return None


def _part_filters(setting: Any) -> list[str]:
    """Filters that match no embedding, head or whole-layer name: a part of a layer (``mlp``)."""
    if not isinstance(setting, list):
        return []
    every = EMBED_TENSORS + HEAD_TENSORS + _layer_tensors(0)
    return [
        str(e["filter"])
        for e in setting
        if isinstance(e, dict) and e.get("filter") and not any(str(e["filter"]) in n for n in every)
    ]


def infer_num_layers(recipe: dict) -> int | None:
    """The longest gradient in the recipe (the parameter space writes one anchor per layer)."""
    best = 0

    def walk(v):
        nonlocal best
        if isinstance(v, list) and v and all(_number(x) for x in v):
            best = max(best, len(v))
        elif isinstance(v, list):
            for e in v:
                walk(e.get("value") if isinstance(e, dict) else None)
        elif isinstance(v, dict):
            walk(v.get("value"))

    for m in recipe.get("models") or []:
        if isinstance(m, dict):
            for v in (m.get("parameters") or {}).values():
                walk(v)
    for v in (recipe.get("parameters") or {}).values():
        walk(v)
    return best or None


def recipe_panels(recipe: dict, num_layers: int | None) -> tuple[dict[str, tuple[list[str], np.ndarray]], int]:
    """{parameter: (row labels, rows × (L + 2) values)} — columns embed, layers 0 … L − 1, head —
    and L."""
    L = num_layers or infer_num_layers(recipe) or 1
    rule = (recipe.get("options") or {}).get("layerless_gradient", "error")
    layers = [(l / (L - 1) if L > 1 else 1.0) for l in range(L)]
    xs = [layerless_position(EMBED_TENSORS[0], rule)] + layers + [layerless_position(HEAD_TENSORS[0], rule)]
    panels: dict[str, tuple[list[str], list[np.ndarray]]] = {}

    def add(param: str, label: str, setting: Any) -> None:
        columns = [EMBED_TENSORS] + [_layer_tensors(l) for l in range(L)] + [HEAD_TENSORS]
        row = [setting_value(setting, c, x) for c, x in zip(columns, xs)]
        if all(v is None for v in row):
            return
        labels, rows = panels.setdefault(param, ([], []))
        labels.append(label)
        rows.append(np.array([np.nan if v is None else v for v in row], dtype=float))
        for f in _part_filters(setting):  # that part of every layer; embeddings / head blank
            part = [setting_value(setting, (f"model.layers.{l}.{f}",), x) for l, x in zip(range(L), xs[1:-1])]
            labels.append(f"{label} [{f}]")
            rows.append(np.array([np.nan] + [np.nan if v is None else v for v in part] + [np.nan]))

    for m in recipe.get("models") or []:
        if isinstance(m, dict):
            for param, setting in (m.get("parameters") or {}).items():
                add(str(param), short_name(m.get("model", "?")), setting)
    for param, setting in (recipe.get("parameters") or {}).items():
        add(str(param), "all models (global)", setting)
    first = [p for p in PARAM_ORDER if p in panels] + [p for p in panels if p not in PARAM_ORDER]
    return {p: (panels[p][0], np.vstack(panels[p][1])) for p in first}, L


def layer_columns(panels: dict[str, tuple[list[str], np.ndarray]], L: int, boundaries: list[int] | None) -> list[range]:
    """The layers each heatmap column stands for: maximal runs of consecutive layers equal in
    every row of every panel (a layer group), also cut at the space's group ``boundaries``."""
    stack = np.vstack([m[:, 1 : L + 1] for _, m in panels.values()])
    cuts = {0, L} | {b for b in (boundaries or []) if 0 < b < L}
    for l in range(1, L):
        a, b = stack[:, l - 1], stack[:, l]
        if not np.array_equal(a, b, equal_nan=True):
            cuts.add(l)
    edges = sorted(cuts)
    return [range(a, b) for a, b in zip(edges, edges[1:])]


def plot_recipe_heatmap(
    recipe: dict, num_layers: int | None, out: Path, *, boundaries: list[int] | None = None, title: str | None = None
) -> Path | None:
    """One column per group: embeddings, each run of layers that share every value, head."""
    panels, L = recipe_panels(recipe, num_layers)
    if not panels:
        return None
    groups = layer_columns(panels, L, boundaries)
    pick = [0] + [g.start + 1 for g in groups] + [L + 1]
    cols = ["embed"] + [str(g.start) if len(g) == 1 else f"{g.start}–{g.stop - 1}" for g in groups] + ["head"]
    heights = [len(labels) + 0.9 for labels, _ in panels.values()]
    width = min(PAGE_WIDTH, max(6.5, 0.55 * len(cols) + 4.2))
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(width, 0.42 * sum(heights) + 1.3), squeeze=False, height_ratios=heights
    )
    dense = len(cols) > 24
    for ax, (param, (labels, full)) in zip(axes[:, 0], panels.items()):
        mat = full[:, pick]
        shown = np.ma.masked_invalid(mat)
        lo, hi = (float(shown.min()), float(shown.max())) if shown.count() else (0.0, 1.0)
        im = ax.imshow(shown, aspect="auto", cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
        ax.set_facecolor("0.92")  # blank cells: no value there
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xticks(range(len(cols)), cols, fontsize=5 if dense else 7.5, rotation=90 if dense else 0)
        for edge in (0.5, len(cols) - 1.5):
            ax.axvline(edge, color="w", lw=3)
        for edge in np.arange(1.5, len(cols) - 2):
            ax.axvline(edge, color="w", lw=0.8)
        if mat.size <= 200 and len(cols) <= 18:
            mid = (lo + hi) / 2
            for i, j in np.ndindex(mat.shape):
                v = mat[i, j]
                text = "n/a" if not np.isfinite(v) else f"{v:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color="k" if v > mid else "w")
        ax.set_ylabel(param, fontsize=10, fontweight="bold")
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    axes[-1, 0].set_xlabel(f"group: embeddings · layers (of {L}) · head (final norm + LM head)")
    fig.suptitle(title or f"recipe: {recipe.get('merge_method', '?')} — every parameter for every group", fontsize=11)
    fig.tight_layout()
    return save(fig, out)


def layer_path(recipe: dict) -> list[tuple[str, int, float]] | None:
    """[(model, layer, input scale)] of a data-flow recipe dict, whatever its exact spelling:
    a ``path`` / ``layers`` list of ``{model, layer, scale}`` mappings or ``[model, layer, scale]``."""
    steps = recipe.get("path") or recipe.get("layers") or recipe.get("layer_path")
    if not isinstance(steps, list) or not steps:
        return None
    out = []
    for s in steps:
        if isinstance(s, dict):
            model, layer, scale = s.get("model", s.get("source", "?")), s.get("layer", s.get("index")), s.get("scale")
        elif isinstance(s, (list, tuple)) and len(s) >= 2:
            model, layer, scale = s[0], s[1], (s[2] if len(s) > 2 else None)
        else:
            return None
        if not _number(layer):
            return None
        scale = finite(scale) if scale is not None else 1.0
        out.append((str(model), int(layer), scale if np.isfinite(scale) and scale > 0 else 1.0))
    return out


def path_text(path: list[tuple[str, int, float]], limit: int = 60) -> str:
    """``A0 → B3 ×1.30 → …``: the path in words (a scale written where it is not 1)."""
    words = [f"{m}{l}" + (f" ×{s:.2f}" if abs(s - 1.0) > 5e-3 else "") for m, l, s in path[:limit]]
    return " → ".join(words) + (f" → … ({len(path) - limit} more)" if len(path) > limit else "")


def plot_layer_path(
    path: list[tuple[str, int, float]],
    out: Path,
    *,
    source_layers: dict[str, int] | None = None,
    embed_from: str | None = None,
    source_labels: dict[str, str] | None = None,
) -> Path:
    """Top: one lane per source, its layers bottom-up; the path visits them left to right (arrows
    in order, each step numbered with its layer). Bottom: each step's input scale (log axis, 1 =
    unscaled)."""
    models = list(dict.fromkeys([m for m, _, _ in path]))
    for m in source_layers or {}:
        if m not in models:
            models.append(m)
    height = {m: max([l + 1 for mm, l, _ in path if mm == m] + [int((source_layers or {}).get(m, 0))]) for m in models}
    base, y0 = {}, 0.0
    for m in reversed(models):  # the first source on top
        base[m] = y0
        y0 += height[m] + 1.0
    n = len(path)
    xs = np.arange(n)
    ys = np.array([base[m] + l for m, l, _ in path])
    fig, (ax, bx) = plt.subplots(
        2,
        1,
        figsize=(min(PAGE_WIDTH, max(7.5, 0.32 * n + 3)), 2.0 + min(0.22 * y0, 7.0) + 1.8),
        sharex=True,
        height_ratios=[3.2, 1],
    )
    labels = source_labels or {}
    for k, m in enumerate(models):
        ax.axhspan(base[m] - 0.5, base[m] + height[m] - 0.5, color=f"C{k}", alpha=0.08, lw=0)
        ax.text(
            1.01,
            base[m] + (height[m] - 1) / 2,
            labels.get(m, short_name(m)) + ("\nembeddings\n+ head" if m == embed_from else ""),
            transform=ax.get_yaxis_transform(),
            ha="left",
            va="center",
            fontsize=9,
            color=f"C{k}",
            fontweight="bold",
        )
    for i in range(n - 1):
        ax.annotate(
            "",
            (xs[i + 1], ys[i + 1]),
            (xs[i], ys[i]),
            arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 1.0, "shrinkA": 6, "shrinkB": 6},
        )
    colors = [f"C{models.index(m)}" for m, _, _ in path]
    size = min(150.0, (0.6 * 72 * (PAGE_WIDTH - 2.5) / max(n, 1)) ** 2)  # markers never overlap
    ax.scatter(xs, ys, s=size, c=colors, edgecolor="k", lw=0.6, zorder=3)
    if size >= 60:
        for x, y, (_, l, _) in zip(xs, ys, path):
            ax.text(x, y, str(l), ha="center", va="center", fontsize=7 if l < 100 else 5, color="w", zorder=4)
    ticks = [base[m] + l for m in models for l in range(height[m])]
    step = max(1, len(ticks) // 24)
    ax.set_yticks(ticks[::step], [str(l) for m in models for l in range(height[m])][::step], fontsize=7)
    ax.set_ylim(-0.9, y0 - 1.1)
    ax.set_ylabel("source layer")
    ax.grid(alpha=0.25)
    used = {m: sum(1 for mm, _, _ in path if mm == m) for m in models}
    ax.set_title(
        f"data-flow path: {n} steps ("
        + ", ".join(f"{labels.get(m, short_name(m))} {c}" for m, c in used.items())
        + "), read left to right",
        fontsize=10,
    )
    scales = np.array([s for _, _, s in path])
    lo, hi = min(0.5, scales.min()), max(2.0, scales.max())
    norm = TwoSlopeNorm(vcenter=0.0, vmin=np.log2(lo), vmax=np.log2(hi))
    bar_colors = plt.get_cmap("coolwarm")(norm(np.log2(scales)))
    bx.bar(xs, scales - 1.0, bottom=1.0, color=bar_colors, edgecolor="0.3", lw=0.4, width=0.7)
    bx.axhline(1.0, color="k", lw=0.8)
    if n <= 40:
        for x, sc in zip(xs, scales):
            if abs(sc - 1.0) > 5e-3:
                bx.text(
                    x,
                    sc * (1.06 if sc > 1 else 1 / 1.06),
                    f"×{sc:.2f}",
                    ha="center",
                    va="bottom" if sc > 1 else "top",
                    fontsize=7,
                )
    bx.set_yscale("log", base=2)
    bx.set_ylim(lo / 1.25, hi * 1.25)
    bx.set_ylabel("input scale", fontsize=9)
    bx.set_xlabel("position on the inference path")
    bx.grid(alpha=0.25)
    bx.set_xticks(xs[:: max(1, -(-n // 26))])
    ax.set_xlim(-0.6, n - 0.4)
    fig.tight_layout()
    return save(fig, out)
