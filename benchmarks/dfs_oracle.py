"""Oracle paths for data-flow merging on the toy world: does any hand-made layer path help?

Before a data-flow search (DFS) can be asked to find a path that beats both experts, some path
must exist. This script scores a principled set of hand-made paths through the two experts
("math" = A, "lang" = B) with the product's own pieces — :class:`evomerge.space.DataFlowRecipe`
recipes run by the merge worker (:func:`evomerge.space.build_path_model` for the path, the
fitness scorer for the score), exactly what a DFS run evaluates:

* ``identity``: each expert alone, as a path (must reproduce the experts' scores);
* ``choice``: every path that takes layer ``i`` from A or from B, in order — all 2^L choices,
  with embeddings / final norm / head (``embed_from``) from either expert: the "layer swap"
  paths (A's first layers then B's last layers and vice versa) and every interleaving of the
  two at equal depth are among them;
* ``stack``: one expert's whole stack followed by some of the other's top layers, or both
  stacks whole, with the junction's input scale ∈ {1, 0.5} (a residual stream twice as long
  carries about twice the norm; the paper's scaling W exists for that);
* ``repeat``: one expert with some of its own middle layers run twice (repetition r = 2);
* ``interleave``: the two stacks zipped (A0 B0 A1 B1 …) and the other way round, 2L layers.

Each path is scored on the calibration split and on the held-out validation split of the
target and of both experts' skills. The "oracle" is the best path on *calibration* (what a
search could select), reported by its held-out target score; a margin over the best expert and
over the best single-expert path is given on the held-out split.

Output: one JSON line per path (``kind: path``) and a ``summary`` line.

    nice -n 10 .venv/bin/python benchmarks/dfs_oracle.py --preset carry --seed 0
    nice -n 10 .venv/bin/python benchmarks/dfs_oracle.py --world-dir /path/to/world --families choice
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

from json_lines import JsonLines  # noqa: E402  (a sibling script's module)

# The benchmark runs from a checkout: make the repo's packages importable without an install.
_ROOT = Path(__file__).resolve().parent.parent
for _p in (_ROOT, _ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILIES = ("identity", "choice", "stack", "repeat", "interleave")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="carry", help="toy-world preset (default carry)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--world-dir", default=None, metavar="DIR", help="a complete toy world in DIR instead of --preset")
    p.add_argument("--a", default="math", help="expert A (default math)")
    p.add_argument("--b", default="lang", help="expert B (default lang)")
    p.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES, help="path families to score")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jsonl", default=None, help="also write the JSON lines to this file")
    return p.parse_args(argv)


def load_world(args):
    from evomerge.errors import EvomergeError
    from evomerge.toyworld import build_toyworld, open_toyworld

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.world_dir is None:
        return build_toyworld(preset=args.preset, seed=args.seed, log=log)
    try:
        return open_toyworld(args.world_dir, log=log)
    except EvomergeError as exc:
        raise SystemExit(f"error: {exc}") from None


# ---------------------------------------------------------------------------------------------
def step(model: str, layer: int, scale: float = 1.0) -> dict:
    return {"model": model, "layer": layer, "scale": scale}


def paths(families, a: str, b: str, n: int) -> list[tuple[str, str, str, list[dict]]]:
    """``(family, name, embed_from, path)`` for every hand-made path of ``families``."""
    out = []
    ends = (a, b)
    if "identity" in families:
        out += [("identity", f"{m} alone", m, [step(m, i) for i in range(n)]) for m in ends]
    if "choice" in families:
        for picks in itertools.product(ends, repeat=n):
            if len(set(picks)) == 1:
                continue  # the identities
            for e in ends:
                name = "choice " + "".join("A" if p == a else "B" for p in picks)
                out.append(("choice", name, e, [step(p, i) for i, p in enumerate(picks)]))
    if "stack" in families:
        for first, second in ((a, b), (b, a)):
            for k in range(1, n + 1):  # the other's top k layers (k = n: its whole stack)
                for scale in (1.0, 0.5):
                    for e in ends:
                        path = [step(first, i) for i in range(n)]
                        path += [step(second, i, scale if j == 0 else 1.0) for j, i in enumerate(range(n - k, n))]
                        out.append(("stack", f"stack {first}[all]+{second}[{n - k}:] s={scale}", e, path))
    if "repeat" in families:
        for m in ends:
            for lo, hi in [(i, j) for i in range(n) for j in range(i + 1, n + 1) if (i, j) != (0, n)]:
                for e in ends:
                    path = [step(m, i) for i in range(hi)] + [step(m, i) for i in range(lo, n)]
                    out.append(("repeat", f"repeat {m}[:{hi}]+{m}[{lo}:]", e, path))
    if "interleave" in families:
        for first, second in ((a, b), (b, a)):
            for e in ends:
                path = [s for i in range(n) for s in (step(first, i), step(second, i))]
                out.append(("interleave", f"interleave {first}/{second}", e, path))
    return out


def rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in scores.items()}


def compact(path: list[dict]) -> str:
    return " ".join(f"{s['model']}.{s['layer']}" + (f"*{s['scale']:g}" if s["scale"] != 1.0 else "") for s in path)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from evomerge.merge.recipes import DataFlowRecipe

    t0 = time.perf_counter()
    world = load_world(args)
    n = int(world.settings.layers)
    target = world.target_task
    tasks = [target] + [t for t in dict.fromkeys(world.expert_skills.values()) if t != target]
    sources = {args.a: str(world.experts[args.a]), args.b: str(world.experts[args.b])}
    emit = JsonLines(args.jsonl)

    emit(
        {
            "kind": "world",
            "root": str(world.root),
            "key": world.key,
            "layers": n,
            "target": target,
            "a": args.a,
            "b": args.b,
        }
    )
    from pareto_demo import Scorer  # the run's merge worker over the world's tasks

    scorer = Scorer(world, tasks, args.batch_size)
    rows = []
    try:
        for family, name, embed_from, path in paths(args.families, args.a, args.b, n):
            recipe = DataFlowRecipe.validate_dict({"sources": sources, "embed_from": embed_from, "path": path})
            recipe = recipe.model_dump(mode="json")
            row = {
                "kind": "path",
                "family": family,
                "name": name,
                "embed_from": embed_from,
                "path": compact(path),
                "length": len(path),
                "calibration": rounded(scorer.recipe(recipe, "calibration")),
                "validation": rounded(scorer.recipe(recipe, "validation")),
            }
            rows.append(row)
            emit(row)
    finally:
        scorer.close()
    experts = {
        r["embed_from"]: r["validation"][target]
        for r in rows
        if r["family"] == "identity"  # the path of each expert alone = the expert
    }
    best_expert = max(experts.values()) if experts else None
    searchable = [r for r in rows if r["family"] != "identity"]
    summary = {"kind": "summary", "target": target, "experts_heldout": experts, "paths": len(rows)}
    if searchable:
        oracle = max(searchable, key=lambda r: (r["calibration"][target], r["validation"][target]))
        hindsight = max(searchable, key=lambda r: r["validation"][target])
        summary.update(
            oracle={k: oracle[k] for k in ("name", "embed_from", "path", "calibration", "validation")},
            oracle_margin_over_best_expert=None
            if best_expert is None
            else round(oracle["validation"][target] - best_expert, 4),
            best_heldout_path={k: hindsight[k] for k in ("name", "embed_from", "path", "validation")},
            helps=bool(best_expert is not None and oracle["validation"][target] > best_expert),
            by_family={
                f: max(r["validation"][target] for r in searchable if r["family"] == f)
                for f in dict.fromkeys(r["family"] for r in searchable)
            },
        )
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    emit(summary)
    emit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
