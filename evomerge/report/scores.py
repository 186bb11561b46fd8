"""Held-out scores per model as a chart — the paper's table as a picture.

Where the numbers come from (:func:`heldout_models`):

* ``summary.json`` ``models``: ``{label: {task: score}}``, written by ``evomerge demo`` (and by any
  run that scores its references): labels ``base``, ``expert:NAME``, ``untuned:METHOD``,
  ``evolved``, and any other label (e.g. one per stage or method, ``PS``, ``DFS``); ``target_task``
  and ``expert_skills`` name the tasks;
* else ``validation.json``: the held-out objectives of the evolved candidate, when they are about
  the run's best candidate — a chart of that one model;
* else nothing: the page says how to compute them.

:func:`plot_heldout` draws grouped bars: a group per task (the target first, then each expert's
skill), a bar per model, coloured by kind — the base grey, sources blue, untuned merges orange,
the evolved merge red, other labels green / purple — with the score on each bar and a dashed line
over each group at the best source's score (base and experts), so "the merge beats every source"
is one look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evomerge.report.common import PAGE_WIDTH, finite, plt, save

_KINDS = {"base": ("Greys", 0.55), "expert": ("Blues", 0.0), "untuned": ("Oranges", 0.0), "other": ("Greens", 0.0)}


def heldout_models(
    summary: dict | None, validation: dict | None, best_id: Any
) -> tuple[dict[str, dict[str, float]], str]:
    """({model label: {task: score}}, a one-line note on where they come from or why absent)."""
    models = (summary or {}).get("models")
    if isinstance(models, dict) and models:
        clean = {
            str(m): {str(t): finite(v) for t, v in s.items()} for m, s in models.items() if isinstance(s, dict) and s
        }
        if clean:
            return clean, "held-out split, from summary.json"
    if isinstance(validation, dict) and isinstance(validation.get("objectives"), dict):
        if best_id is not None and validation.get("id") == best_id:
            scores = {str(t): finite(v) for t, v in validation["objectives"].items()}
            return {f"evolved (#{best_id})": scores}, (
                "held-out split of the evolved candidate only, from validation.json "
                "(no reference models were scored for this run)"
            )
        return {}, (
            f"validation.json is about candidate #{validation.get('id')}, not the best #{best_id}: "
            "run `evomerge status --validate RUN` to score the best on the held-out split"
        )
    return {}, "no held-out scores yet: run `evomerge status --validate RUN` to score the best candidate"


def kind(label: str) -> str:
    if label == "base":
        return "base"
    if label.startswith("evolved"):
        return "evolved"
    head = label.split(":", 1)[0]
    return head if head in ("expert", "untuned") else "other"


#: the paper's column order for the untuned merges; others follow in the file's order
UNTUNED_ORDER = ("untuned:task_arithmetic", "untuned:ties", "untuned:dare_ties")


def order_models(models: dict[str, dict]) -> list[str]:
    rank = {"base": 0, "expert": 1, "untuned": 2, "other": 3, "evolved": 4}
    known = {m: i for i, m in enumerate(UNTUNED_ORDER)}
    return sorted(models, key=lambda m: (rank[kind(m)], known.get(m, len(known)), list(models).index(m)))


def order_tasks(models: dict[str, dict], target: str | None, skills: dict[str, str] | None) -> list[str]:
    every = list(dict.fromkeys(t for s in models.values() for t in s))
    first = [t for t in [target, *(skills or {}).values()] if t in every]
    return list(dict.fromkeys(first + sorted(t for t in every if t not in first)))


def model_colors(labels: list[str]) -> dict[str, Any]:
    by_kind: dict[str, list[str]] = {}
    for m in labels:
        by_kind.setdefault(kind(m), []).append(m)
    out: dict[str, Any] = {}
    for k, ms in by_kind.items():
        if k == "evolved":
            for i, m in enumerate(ms):
                out[m] = "#d62728" if i == 0 else plt.get_cmap("Reds")(0.9 - 0.15 * i)
            continue
        cmap, fixed = _KINDS[k]
        for i, m in enumerate(ms):
            out[m] = plt.get_cmap(cmap)(fixed or 0.45 + 0.4 * i / max(1, len(ms) - 1))
    return out


def headline(models: dict[str, dict[str, float]], target: str | None) -> str:
    """``evolved 0.68 on target: +0.11 over the best source, +0.14 over the best untuned merge``."""
    evolved = next((m for m in order_models(models) if kind(m) == "evolved"), None)
    if evolved is None or target is None or not np.isfinite(finite(models[evolved].get(target))):
        return ""
    v = finite(models[evolved][target])
    parts = [f"{evolved} {v:.3g} on {target}"]
    for what, kinds in (("the best source", ("base", "expert")), ("the best untuned merge", ("untuned",))):
        others = [finite(s.get(target)) for m, s in models.items() if kind(m) in kinds]
        others = [o for o in others if np.isfinite(o)]
        if others:
            parts.append(f"{v - max(others):+.3g} over {what}")
    return parts[0] + (": " + ", ".join(parts[1:]) if len(parts) > 1 else "")


def plot_heldout(
    models: dict[str, dict[str, float]],
    out: Path,
    *,
    target: str | None = None,
    skills: dict[str, str] | None = None,
) -> Path | None:
    labels = order_models(models)
    tasks = order_tasks(models, target, skills)
    if not labels or not tasks:
        return None
    colors = model_colors(labels)
    n = len(labels)
    width = min(0.8 / n, 0.28)
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 4.6))
    values = np.array([[finite(models[m].get(t)) for t in tasks] for m in labels])
    for i, m in enumerate(labels):
        xs = np.arange(len(tasks)) - width * n / 2 + width * (i + 0.5)
        ys = values[i]
        ax.bar(xs, np.nan_to_num(ys), width * 0.92, color=colors[m], edgecolor="0.25", lw=0.5, label=m)
        for x, y in zip(xs, ys):
            text = "—" if not np.isfinite(y) else f"{y:.2f}"
            ax.text(
                x,
                (y if np.isfinite(y) else 0) + 0.01,
                text,
                ha="center",
                va="bottom",
                fontsize=7 if n * len(tasks) <= 30 else 5.5,
                rotation=90,
                bbox={"facecolor": "w", "edgecolor": "none", "pad": 0.6, "alpha": 0.75},
            )
    sources = [i for i, m in enumerate(labels) if kind(m) in ("base", "expert")]
    if sources and len(labels) > len(sources):
        for j in range(len(tasks)):
            col = values[sources, j]
            if np.any(np.isfinite(col)):
                ax.hlines(
                    np.nanmax(col),
                    j - width * n / 2 - 0.02,
                    j + width * n / 2 + 0.02,
                    colors="k",
                    linestyles="--",
                    lw=1,
                )
        ax.plot([], [], "--", color="k", lw=1, label="best source (base, experts)")
    names = {t: t for t in tasks}
    if target in names:
        names[target] = f"{target}\n(target)"
    for expert, skill in (skills or {}).items():
        if skill in names and skill != target:
            names[skill] = f"{skill}\n(skill of expert {expert})"
    ax.set_xticks(range(len(tasks)), [names[t] for t in tasks], fontsize=9)
    top = np.nanmax(values) if np.any(np.isfinite(values)) else 1.0
    unit = np.nanmin(values) >= 0 and top <= 1 if np.any(np.isfinite(values)) else True
    ax.set_ylim(0, 1.12 if unit else top * 1.15)
    ax.set_ylabel("held-out score")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(headline(models, target) or "held-out scores per model", fontsize=10)
    fig.tight_layout()
    return save(fig, out)
