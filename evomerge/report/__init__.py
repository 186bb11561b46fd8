"""``evomerge report RUN_DIR``: PNG figures and one self-contained HTML page (images inlined).

Everything comes from the run directory (``meta.json``, ``evaluations.jsonl``, ``best/``,
``validation.json``, ``summary.json``): a report can be drawn while the run is still going, on a
machine without the models.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from evomerge.errors import RunDirError
from evomerge.merge.recipes import parse_recipe
from evomerge.report import plots
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
    meta = store.read_json(store.root / "meta.json") or {}
    objectives = meta.get("objectives") or _objectives_from(records)
    names = [o["name"] for o in objectives]
    directions = {o["name"]: o.get("direction", "maximize") for o in objectives}
    out = Path(out_dir) if out_dir else store.root / "report"
    out.mkdir(parents=True, exist_ok=True)

    figures: list[tuple[str, Path]] = []
    runs = {_label(meta, store.root): records}
    for other in compare:
        o_store = RunStore(other)
        o_store.require()
        runs[_label(o_store.read_json(o_store.root / "meta.json") or {}, o_store.root)] = o_store.read_log()
    figures.append(("Objective vs evaluations", plots.plot_progress(runs, names, directions, out / "progress.png")))
    pareto = plots.plot_pareto(records, names, directions, out / "pareto.png")
    if pareto:
        figures.append(("Pareto front", pareto))
    best = best_record(records)
    recipe = (best or {}).get("recipe") or {}
    # the parameter-space merge of the best recipe (for PS+DFS: the nested one that became model A)
    ps_recipe = parse_recipe(recipe).parameter_recipe() if recipe else None
    heat = (
        plots.plot_recipe_heatmap(ps_recipe.to_dict(), meta.get("num_layers"), out / "recipe_heatmap.png")
        if ps_recipe is not None
        else None
    )
    if heat:
        figures.append(("Best recipe: per-layer parameters", heat))
    path = plots.layer_path(recipe) if recipe else None
    if path:
        figures.append(("Best recipe: data-flow layer path", plots.plot_layer_path(path, out / "layer_path.png")))

    summary = summarize(store, records)
    demo = store.read_json(store.summary_path)
    index = out / "index.html"
    index.write_text(_html(store.root, meta, summary, demo, best, figures))
    return index


def _label(meta: dict, root: Path) -> str:
    return meta.get("driver") or root.name


def _objectives_from(records: list[dict]) -> list[dict]:
    for r in records:
        if r.get("objectives"):
            return [{"name": k, "direction": "maximize"} for k in r["objectives"]]
    return []


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(rows: list[list[Any]], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _html(root: Path, meta: dict, s: dict, demo: dict | None, best: dict | None, figures) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>evomerge report</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}",
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}",
        "img{max-width:100%;border:1px solid #eee;margin:.5em 0}pre{background:#f6f6f6;padding:.8em;overflow:auto}",
        "</style></head><body>",
        f"<h1>evomerge report: {html.escape(root.name)}</h1>",
    ]
    rows = [
        ["run directory", str(root)],
        ["driver", meta.get("driver")],
        ["space", (meta.get("space") or {}).get("kind")],
        ["evaluations", f"{s['evaluations']} ({s['failed']} failed)"],
        ["Pareto size", s["pareto_size"]],
        ["throughput", f"{s['throughput_per_hour']:.1f} evaluations/hour" if s.get("throughput_per_hour") else None],
    ]
    if s["best"]:
        rows.append(["best candidate", f"#{s['best']['id']}"])
        for k, v in (s["best"]["objectives"] or {}).items():
            rows.append([f"best {k} (calibration)", v])
        for k, v in (s["best"].get("validation") or {}).items():
            rows.append([f"best {k} (held-out)", v])
    parts.append(_table(rows, ["", ""]))
    if demo and demo.get("models"):
        tasks = sorted({t for scores in demo["models"].values() for t in scores})
        head = ["model"] + [f"{t}{' (target)' if t == demo.get('target_task') else ''}" for t in tasks]
        parts.append("<h2>Held-out scores</h2>")
        parts.append(_table([[m] + [scores.get(t) for t in tasks] for m, scores in demo["models"].items()], head))
    for title, path in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>{_img(path)}")
    if best and best.get("recipe"):
        parts.append(
            "<h2>Best recipe</h2><pre>" + html.escape(yaml.safe_dump(best["recipe"], sort_keys=False)) + "</pre>"
        )
    parts.append("<h2>Run metadata</h2><pre>" + html.escape(json.dumps(meta, indent=2)[:20000]) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
