"""``evomerge report RUN_DIR``: PNG figures and one self-contained HTML page (images inlined).

Everything comes from the run directory (``meta.json``, ``evaluations.jsonl``, ``validation.json``,
``summary.json``): a report can be drawn while the run is still going, on a machine without the
models, in seconds. What is missing is left out with a note on the page, never an error (except a
run with no evaluations at all). The page, top to bottom:

1. **held-out scores per model** (:mod:`evomerge.report.scores`): sources, base, untuned merges
   and the evolved merge as grouped bars per task, from ``summary.json`` ``models``; else the
   evolved candidate alone from ``validation.json``; else a note;
2. **search progress**: objective vs evaluations; for a staged run (sequential PS+DFS; the
   on-disk contract is in :mod:`evomerge.report.stages`: records carry ``meta.stage``, meta.json
   may list ``stages``) one colour per stage, the boundaries marked and each stage's best starred,
   with a table of the stages' bests; ``--compare`` runs overlaid in a figure of their own;
3. **Pareto front**: two objectives as a plane with the front's staircase; three or more as a
   scatter matrix with the front as parallel coordinates (:mod:`evomerge.report.pareto_matrix`);
4. **the best recipe** (per stage for a staged run) (:mod:`evomerge.report.recipes`): a
   data-flow recipe's layer path (which layer of which source, in order, with its input scale)
   and, for each parameter-space recipe (nested ones included: PS+DFS's model A), a heatmap of
   every parameter for every group — embeddings, each layer, head;
5. the recipe YAML and meta.json, folded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from evomerge.errors import RunDirError
from evomerge.io.outputs import check_replaceable, output_dir
from evomerge.report import page, pareto_matrix, plots, recipes, scores
from evomerge.report.common import short_name
from evomerge.report.page import Figure
from evomerge.report.stages import Stage, read_stages
from evomerge.runs.store import RunStore
from evomerge.runs.summary import best_record, summarize


def report(run_dir: str | Path, compare: list[str | Path] = (), out_dir: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report/`` (PNGs + ``index.html``) and return the HTML's path.

    ``compare``: other run directories whose progress curves are overlaid (e.g. one per driver).
    """
    store = RunStore(run_dir)
    store.require()
    records = store.read_log()
    if not records:
        raise RunDirError(f"{store.log_path} holds no evaluations yet; nothing to report")
    others = []
    for other in compare:  # checked before anything is drawn
        o_store = RunStore(other)
        o_store.require()
        others.append(o_store)
    meta = _mapping(store.read_json(store.root / "meta.json"))
    listed = meta.get("objectives") if isinstance(meta.get("objectives"), list) else None
    objectives = [o for o in (listed or _objectives_from(records)) if isinstance(o, dict)]
    names = [str(o["name"]) for o in objectives if "name" in o]
    directions = {str(o["name"]): o.get("direction", "maximize") for o in objectives if "name" in o}
    final = Path(out_dir) if out_dir else store.root / "report"
    # The page is drawn into a temporary sibling and put in place whole (the old one stays until
    # then); only an earlier report is replaced, never a folder a user put there.
    check_replaceable(final, kind=REPORT_KIND, force=True, own_run=store.root, recognise=_is_legacy_report)
    with output_dir(final, kind=REPORT_KIND, writer="evomerge report", what="the report") as out:
        _draw(store, records, others, meta, names, directions, out)
    return final / "index.html"


def _draw(
    store: RunStore, records: list[dict], others: list[RunStore], meta: dict, names, directions, out: Path
) -> None:
    stages = read_stages(store.root, meta, records)
    every = [r for st in stages for r in st.records] if stages else records
    best = best_record(every)
    summary = _mapping(store.read_json(store.summary_path))
    validation = store.read_json(store.validation_path)
    sections: dict[str, list[str]] = {k: [] for k in ("Held-out scores", "Search progress", "Pareto front")}

    models, where = scores.heldout_models(summary, validation, None if best is None else best.get("id"))
    target = summary.get("target_task") or meta.get("target_task")
    skills = summary.get("expert_skills") or meta.get("expert_skills") or {}
    chart = scores.plot_heldout(models, out / "heldout.png", target=target, skills=skills) if models else None
    if chart:
        sections["Held-out scores"].append(page.figure(Figure("", chart, where)))
        tasks = scores.order_tasks(models, target, skills)
        rows = [[m] + [models[m].get(t) for t in tasks] for m in scores.order_models(models)]
        sections["Held-out scores"].append(_fold("the numbers", page.table(rows, ["model", *tasks])))
    else:
        sections["Held-out scores"].append(page.note(where))

    progress = sections["Search progress"]
    if stages:
        fig = plots.plot_stage_progress(stages, names, directions, out / "progress.png")
        progress.append(page.figure(Figure("", fig, "each stage in its own colour; dashed: stage boundary")))
        progress.append(page.table(_stage_rows(stages, names), ["stage", "evaluations", "best", *names]))
        progress.extend(page.note(n) for st in stages for n in st.notes)
    else:
        fig = plots.plot_progress({_label(meta, store.root): records}, names, directions, out / "progress.png")
        progress.append(page.figure(Figure("", fig, "calibration objective of every evaluation")))
    if others:
        runs = {_label(meta, store.root): every}
        for o in others:
            runs[_label(_mapping(o.read_json(o.root / "meta.json")), o.root)] = o.read_log()
        fig = plots.plot_progress(runs, names, directions, out / "compare.png")
        progress.append(page.figure(Figure("", fig, "this run against the --compare runs")))

    pareto = (
        pareto_matrix.plot_pareto_matrix(every, names, directions, out / "pareto.png")
        if len(names) >= 3
        else plots.plot_pareto(every, names, directions, out / "pareto.png")
    )
    if pareto:
        sections["Pareto front"].append(page.figure(Figure("", pareto, "calibration objectives; ok candidates only")))
    elif len(names) >= 2:
        sections["Pareto front"].append(page.note("no candidate scored every objective yet"))

    drawn: dict[str, str] = {}
    if stages:
        for st in stages:
            key = f"Best recipe of stage {st.label}"
            sections[key] = _recipe_figures(st.best, st, meta, out, _slug(st.name) + "_", drawn)
            if st.best is None:
                sections[key].append(page.note(f"stage {st.label} has no ok evaluation yet"))
    else:
        sections["Best recipe"] = _recipe_figures(best, None, meta, out, "", drawn)

    s = summarize(store, records)
    headline = _headline(s, models, target, stages)
    sub = " · ".join(
        str(x)
        for x in (store.root, meta.get("driver"), _space_kind(meta), f"{len(every)} evaluations", s.get("state"))
        if x and x != "unknown"
    )
    folded = [("meta.json", meta)] if not best or not best.get("recipe") else [("best recipe (YAML)", best["recipe"])]
    if best and best.get("recipe"):
        folded.append(("meta.json", meta))
    index = out / "index.html"
    index.write_text(page.page(f"evomerge report: {store.root.name}", sub, headline, list(sections.items()), folded))


#: The marker kind of a report folder.
REPORT_KIND = "report"


def _is_legacy_report(path: Path) -> bool:
    """A report folder written before markers: ``index.html`` with evomerge's title, files only."""
    try:
        head = (path / "index.html").read_bytes()[:4096].decode("utf-8", errors="replace")
    except OSError:
        return False
    return "evomerge report" in head and all(p.is_file() and not p.is_symlink() for p in path.iterdir())


def _recipe_figures(
    best: dict | None, stage: Stage | None, meta: dict, out: Path, prefix: str, drawn: dict[str, str]
) -> list[str]:
    """The path of a data-flow recipe and a heatmap of each parameter-space recipe in it; a
    recipe already drawn (a PS winner nested in the DFS stage's recipes) is drawn once."""
    recipe = _mapping((best or {}).get("recipe"))
    if not recipe:
        return []
    space = (stage.space if stage and stage.space else None) or _mapping(meta.get("space"))
    num_layers = (stage.num_layers if stage else None) or meta.get("num_layers")
    who = f"#{best.get('id')}"
    parts: list[str] = []
    path = recipes.layer_path(recipe)
    if path:
        dfs = _mapping(space.get("dfs")) or space
        sources = _mapping(recipe.get("sources"))
        labels = {k: (f"{k} (merge)" if isinstance(v, dict) else f"{k}: {short_name(v)}") for k, v in sources.items()}
        layers = {k: v for k, v in _mapping(dfs.get("sources")).items() if isinstance(v, int)}
        fig = recipes.plot_layer_path(
            path,
            out / f"{prefix}layer_path.png",
            source_layers=layers,
            embed_from=recipe.get("embed_from"),
            source_labels=labels,
        )
        seq = recipes.path_text(path)
        parts.append(
            page.figure(
                Figure("", fig, f"candidate {who}: the layers that run, in order, and their input scales: {seq}")
            )
        )
        nested = [(k, v) for k, v in sources.items() if isinstance(v, dict)]
        ps = _mapping(space.get("ps")) or space
        for k, sub in nested:
            parts += _heatmap(
                sub,
                layers.get(k) or num_layers,
                ps,
                out / f"{prefix}recipe_{_slug(k)}.png",
                f"source {k} of {who} (a merge)",
                drawn,
            )
    else:
        parts += _heatmap(recipe, num_layers, space, out / f"{prefix}recipe_heatmap.png", f"candidate {who}", drawn)
    return parts


def _heatmap(recipe: dict, num_layers: Any, space: dict, path: Path, who: str, drawn: dict[str, str]) -> list[str]:
    key = json.dumps(recipe, sort_keys=True, default=str)
    if key in drawn:
        return [page.note(f"{who} is the recipe of {drawn[key]}, drawn above")]
    drawn[key] = who
    bounds = space.get("layer_boundaries")
    bounds = [b for b in bounds if isinstance(b, int)] if isinstance(bounds, list) else None
    fig = recipes.plot_recipe_heatmap(
        recipe, num_layers if isinstance(num_layers, int) else None, path, boundaries=bounds
    )
    if fig is None:
        return [page.note(f"{who}: the recipe sets no per-model or global parameter to draw")]
    return [
        page.figure(
            Figure(
                "",
                fig,
                f"{who}: {recipe.get('merge_method', '?')}; one column per group (layers that share every value)",
            )
        )
    ]


def _headline(s: dict, models: dict, target: str | None, stages: list[Stage]) -> list[tuple[str, Any, bool]]:
    items: list[tuple[str, Any, bool]] = []
    evolved = next((m for m in models if scores.kind(m) == "evolved"), None)
    if evolved:
        for t, v in models[evolved].items():
            if t == target or not target:
                items.append((f"held-out {t} · evolved", round(v, 4), True))
        others = [sc.get(target) for m, sc in models.items() if m != evolved and target in sc]
        others = [v for v in others if isinstance(v, float) and v == v]
        if target and others:
            items.append((f"best other model · {target}", round(max(others), 4), False))
    if s.get("best"):
        for k, v in (s["best"].get("objectives") or {}).items():
            items.append((f"calibration {k} · #{s['best']['id']}", round(float(v), 4) if _num(v) else v, False))
    items.append(("evaluations", s["evaluations"] if not stages else sum(len(st.records) for st in stages), False))
    if s.get("failed"):
        items.append(("failed", s["failed"], False))
    items.append(("Pareto size", s["pareto_size"], False))
    if stages:
        items.append(("stages", " → ".join(st.label for st in stages), False))
    return items


def _stage_rows(stages: list[Stage], names: list[str]) -> list[list[Any]]:
    rows = []
    for st in stages:
        b = st.best
        objs = (b or {}).get("objectives") or {}
        budget = f" / {st.max_evals}" if st.max_evals else ""
        rows.append(
            [st.label, f"{len(st.records)}{budget}", f"#{b['id']}" if b else "none yet"] + [objs.get(n) for n in names]
        )
    return rows


def _fold(summary: str, inner: str) -> str:
    return f"<details><summary>{summary}</summary>{inner}</details>"


def _mapping(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(name))[:40] or "x"


def _space_kind(meta: dict) -> str | None:
    kind = _mapping(meta.get("space")).get("kind")
    return f"{kind} space" if kind else None


def _label(meta: dict, root: Path) -> str:
    return meta.get("driver") or root.name


def _objectives_from(records: list[dict]) -> list[dict]:
    for r in records:
        if isinstance(r.get("objectives"), dict) and r["objectives"]:
            return [{"name": k, "direction": "maximize"} for k in r["objectives"]]
    return []
