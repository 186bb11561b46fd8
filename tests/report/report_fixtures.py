"""Hand-written run directories for the report tests: what a run writes, without running one.

- :func:`ps_run`: a parameter-space TIES run over two experts (4 layers in 2 groups, embeddings
  and head groups of their own, weight + density), with ``objectives`` math / lang / target
  (``n_objectives`` of them), optionally ``summary.json`` models and ``validation.json``;
- :func:`psdfs_run`: a sequential PS+DFS run by the stage contract of
  :mod:`evomerge.report.stages`: ``meta.json`` ``stages`` and records with ``meta.stage``; the
  DFS stage's recipes are data-flow paths whose source A is the PS stage's best recipe, nested.
"""

import json

import numpy as np

BASE, EA, EB = "/models/base", "/models/expert_math", "/models/expert_lang"
EMBED = ("embed_tokens", "wte", "wpe")
HEAD = ("lm_head", "model.norm.", "ln_f")
TASKS = ("target", "math", "lang")


def ps_recipe(rng, num_layers=4, groups=(0, 2, 4)):
    """What ParameterSpace writes: per expert, embed / head filter entries and a per-layer gradient."""

    def spec(lo, hi):
        embed, head = rng.uniform(lo, hi, 2)
        per_group = rng.uniform(lo, hi, len(groups) - 1)
        layers = [float(per_group[g]) for g in range(len(groups) - 1) for _ in range(groups[g + 1] - groups[g])]
        return (
            [{"filter": f, "value": float(embed)} for f in EMBED]
            + [{"filter": f, "value": float(head)} for f in HEAD]
            + [{"value": layers}]
        )

    models = [{"model": BASE}] + [
        {"model": m, "parameters": {"weight": spec(0.0, 1.5), "density": spec(0.1, 1.0)}} for m in (EA, EB)
    ]
    return {"merge_method": "ties", "base_model": BASE, "models": models, "dtype": "float32", "seed": 0}


def dfs_recipe(rng, ps, num_layers=4, extra=6):
    """A path from A's first layer to its last through ``extra`` layers of A or B, with scales."""
    steps = [{"model": "A", "layer": 0, "scale": 1.0}]
    for _ in range(extra):
        steps.append(
            {
                "model": str(rng.choice(["A", "B"])),
                "layer": int(rng.integers(0, num_layers)),
                "scale": float(2 ** rng.uniform(-1, 1)),
            }
        )
    steps.append({"model": "A", "layer": num_layers - 1, "scale": 1.0})
    return {
        "merge_method": "dataflow",
        "sources": {"A": ps, "B": EB},
        "embed_from": "A",
        "path": steps,
        "dtype": "float32",
    }


def record(i, objectives, recipe, *, names, stage=None, status="ok"):
    vals = [objectives[n] for n in names]
    meta = {"generation": i // 8, "index": i % 8}
    if stage:
        meta["stage"] = stage
    return {
        "id": i,
        "status": status,
        "objectives": dict(objectives) if status == "ok" else None,
        "values": vals if status == "ok" else None,
        "score": float(np.mean(vals)) if status == "ok" else None,
        "recipe": recipe,
        "meta": meta,
        "started": 1000.0 + i,
        "finished": 1000.5 + i,
        "error": None if status == "ok" else "boom",
    }


def _scores(rng, i, n, names, level):
    """Trade-off scores in [0, 1] that improve with i (a search that learns)."""
    t = 1 - np.exp(-3 * (i + 1) / n)
    raw = np.clip(
        level + 0.35 * t * rng.dirichlet(np.ones(len(names))) * len(names) / 1.5 + rng.normal(0, 0.04, len(names)), 0, 1
    )
    return {k: float(v) for k, v in zip(names, raw)}


def _meta(names, **extra):
    space = {
        "kind": "parameter",
        "groups": ["embed", "layers.0", "layers.1", "head"],
        "layer_boundaries": [0, 2, 4],
        "method": "ties",
    }
    out = {
        "driver": "cmaes",
        "objectives": [{"name": n, "direction": "maximize", "weight": 1.0} for n in names],
        "space": space,
        "num_layers": 4,
        "target_task": "target",
        "expert_skills": {"math": "math", "lang": "lang"},
    }
    out.update(extra)
    return out


def write_run(root, records, meta, *, summary=None, validation=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text("description: report fixture\n")
    (root / "meta.json").write_text(json.dumps(meta, indent=2))
    (root / "evaluations.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary, indent=2))
    if validation is not None:
        (root / "validation.json").write_text(json.dumps(validation, indent=2))
    return root


def best_of(records):
    ok = [r for r in records if r["status"] == "ok"]
    return max(ok, key=lambda r: r["score"])  # first of equals, as best_record


def ps_run(root, *, n=60, n_objectives=3, with_summary=True, with_validation=False, seed=0):
    rng = np.random.default_rng(seed)
    names = list(TASKS[:n_objectives])
    records = [
        record(i, _scores(rng, i, n, names, 0.2), ps_recipe(rng), names=names, status="failed" if i == 5 else "ok")
        for i in range(n)
    ]
    summary = None
    if with_summary:
        models = {
            "base": {},
            "expert:math": {},
            "expert:lang": {},
            "untuned:task_arithmetic": {},
            "untuned:ties": {},
            "evolved": {},
        }
        summary = {
            "target_task": "target",
            "expert_skills": {"math": "math", "lang": "lang"},
            "models": {m: {t: float(rng.uniform(0, 1)) for t in TASKS} for m in models},
            "evolved_id": best_of(records)["id"],
        }
    validation = None
    if with_validation:
        validation = {
            "id": best_of(records)["id"],
            "objectives": {k: float(rng.uniform(0, 1)) for k in names},
            "split": "validation",
        }
    return write_run(root, records, _meta(names), summary=summary, validation=validation)


def psdfs_run(root, *, n_ps=40, n_dfs=30, dfs_started=True, seed=1):
    """Stages listed in meta.json; ``dfs_started=False``: the run is still in its PS stage."""
    rng = np.random.default_rng(seed)
    names = ["target"]
    ps = [record(i, _scores(rng, i, n_ps, names, 0.1), ps_recipe(rng), names=names, stage="ps") for i in range(n_ps)]
    winner = best_of(ps)
    dfs = []
    if dfs_started:
        for j in range(n_dfs):
            i = n_ps + j
            recipe = dfs_recipe(rng, winner["recipe"])
            obj = {"target": float(min(1.0, winner["score"] + rng.normal(0.0, 0.05) + 0.1 * j / n_dfs))}
            dfs.append(record(i, obj, recipe, names=names, stage="dfs"))
    stages = [
        {"name": "ps", "label": "PS", "kind": "parameter", "max_evals": n_ps},
        {
            "name": "dfs",
            "label": "DFS",
            "kind": "dataflow",
            "max_evals": n_dfs,
            "space": {"kind": "dataflow", "sources": {"A": 4, "B": 4}, "embed_from": "A", "repeats": 2},
        },
    ]
    meta = _meta(names, stages=stages)
    return write_run(root, ps + dfs, meta)
