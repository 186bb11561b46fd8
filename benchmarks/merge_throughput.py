"""Merge throughput on a 135M-parameter Llama: how close a merge gets to memory bandwidth.

Model: a randomly initialised ``LlamaForCausalLM`` with SmolLM2-135M's shapes (hidden 576, 30
layers, intermediate 1536, 9 heads / 3 KV heads, vocabulary 49152, tied embeddings: 134.5M
parameters); experts are base + N(0, 0.01²) noise. The checkpoints are written once under
``$TMPDIR/evomerge-bench/`` (never in the repository) and reused by later runs.

For each method and expert count the script prints one JSON object per line. Every time is the
*steady state of a search*: the pool holds the task vectors and — with the search cache on (the
default for a search pool, ``--no-search-cache`` turns it off) — the sorted magnitudes (TIES,
Breadcrumbs), DARE/DELLA's uniform draws and DELLA's ranks, all built by the first apply:

- ``seconds``: one full in-place merge — every tensor recomputed from the pool's cached float32
  inputs and written into the parameters of a live model (``InPlaceMerger.apply(recipe,
  force=True)``). Best of ``--repeats`` runs, interleaved with the memcpy runs.
- ``first_apply_seconds``: the first apply of the run, which also builds the search cache (a stable
  sort of ``|τ|`` per (expert, tensor) for TIES, the uniform draws for DARE); paid once per search.
- ``load_seconds``: reading the checkpoints and subtracting the task vectors (``pool.warm``), once.
- ``search_cache_bytes``: memory the search cache holds after the run.
- ``gbytes_read``: bytes of merge inputs read by one merge, 10⁹ B: (inputs per tensor) × 4 B ×
  ``n_params``, where inputs are the N expert tensors plus the base when the method reads it
  (the cache's own reads — uniforms, ranks — are not counted: they are the method's work).
- ``gbps`` = ``gbytes_read / seconds``.
- ``memcpy_gbps``: the same bytes — the very same input tensors — copied with ``Tensor.copy_`` into a
  scratch buffer, timed in the same run (each memcpy right after a merge), best of ``--repeats``. A merge also writes its result once,
  and a memcpy writes as much as it reads, so a ratio of 1 is not a hard ceiling but a fair yardstick.
- ``ratio_to_memcpy`` = ``gbps / memcpy_gbps``.
- ``inplace_swap_seconds``: applying a *different* recipe (every weight changed, and every density
  for methods that have one, so no tensor can be skipped and every trim threshold moves) into the
  live model, as a search does per candidate (best of ``--repeats``; the recipes alternate between
  two settings).

Threads: ``torch.set_num_threads(--threads)`` (default 1: on a shared, oversubscribed machine a
2-thread OpenMP region waits at every barrier for a descheduled thread — ties ran 10× slower with 2
threads than with 1 at a load average of 12 on 2 cores). Absolute numbers are
noisy; the ratio is measured in one run so that both sides see the same load.

Run: ``nice -n 10 .venv/bin/python benchmarks/merge_throughput.py [--methods ...] [--experts 2 4]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
)
DEFAULT_METHODS = ["linear", "task_arithmetic", "ties", "dare_ties"]


def build_checkpoints(root: Path, n_experts: int, noise: float = 0.01) -> dict:
    """base and expert_1..expert_n under ``root`` (built once; a ``.done`` marker per model)."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    root.mkdir(parents=True, exist_ok=True)
    base_dir = root / "base"
    experts = [root / f"expert_{k}" for k in range(1, n_experts + 1)]
    if (base_dir / ".done").exists() and all((e / ".done").exists() for e in experts):
        return {"base": base_dir, "experts": experts}
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPES))
    if not (base_dir / ".done").exists():
        model.save_pretrained(base_dir)
        (base_dir / ".done").touch()
    state = {k: v.detach() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for k, e in enumerate(experts, start=1):
        if (e / ".done").exists():
            continue
        e.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(1000 + k)
        noisy = {n: (t + noise * torch.randn(t.shape, generator=gen)).contiguous() for n, t in state.items()}
        save_file(noisy, str(e / "model.safetensors"), metadata={"format": "pt"})
        (e / "config.json").write_bytes((base_dir / "config.json").read_bytes())
        (e / ".done").touch()
        del noisy
    return {"base": base_dir, "experts": experts}


def recipe_dict(method: str, base: Path, experts: list[Path], shift: float = 0.0) -> dict:
    """A typical search candidate; ``shift`` moves every weight and density so that no tensor can
    be skipped and every trim threshold changes."""
    n = len(experts)
    models = []
    for k, e in enumerate(experts):
        params: dict = {"weight": round(1.0 / n + shift * (1 if k % 2 == 0 else -1), 6)}
        if method in ("ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"):
            params["density"] = round(0.5 + 2 * shift, 6)
        models.append({"model": str(e), "parameters": params})
    return {"merge_method": method, "base_model": str(base), "models": models, "dtype": "float32", "seed": 0}


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def memcpy_runner(inputs: list[torch.Tensor]):
    """A function copying every input tensor once into a scratch buffer (pages touched up front)."""
    largest = max(t.numel() for t in inputs)
    scratch = torch.empty(largest, dtype=inputs[0].dtype)
    scratch.fill_(0)

    def run():
        for t in inputs:
            scratch[: t.numel()].copy_(t.view(-1))

    run()
    return run


def measure(method: str, paths: dict, n_experts: int, live, repeats: int, search_cache: bool = True) -> dict:
    from evomerge.merge.apply import InPlaceMerger, expert_ids
    from evomerge.merge.cache import MergeCache
    from evomerge.merge.methods import get_method
    from evomerge.merge.recipes.parameter import Recipe

    experts = paths["experts"][:n_experts]
    recipe = Recipe.model_validate(recipe_dict(method, paths["base"], experts))
    swap = [Recipe.model_validate(recipe_dict(method, paths["base"], experts, shift=s)) for s in (0.05, -0.05)]
    spec = get_method(method)

    from evomerge.pool import ModelPool

    pool = ModelPool(str(paths["base"]), expert_ids(recipe), cache=True)
    t0 = time.perf_counter()
    pool.warm(deltas=spec.uses_deltas)
    load_seconds = time.perf_counter() - t0

    merger = InPlaceMerger(pool, live, cache=MergeCache(search=search_cache))
    # The first apply builds the search cache (and touches every page of outputs and inputs).
    first_apply_seconds = merger.apply(recipe, force=True).seconds

    names = list(merger.targets)
    if spec.uses_deltas:
        inputs = [pool.delta(m, n) for n in names for m in pool.models]
    else:
        inputs = [pool.tensor(m, n) for n in names for m in expert_ids(recipe)]
    if spec.needs_base:
        inputs += [pool.tensor(pool.base, n) for n in names]
    n_params = sum(merger.targets[n].numel() for n in names)
    gbytes = sum(t.numel() * t.element_size() for t in inputs) / 1e9
    copy = memcpy_runner(inputs)

    # Interleaved, so that merge and memcpy see the same background load; best of each.
    merges, copies, swaps = [], [], []
    for k in range(repeats):
        merges.append(merger.apply(recipe, force=True).seconds)
        copies.append(best_of(copy, 1))
        stats = merger.apply(swap[k % 2])
        if stats.recomputed != len(merger.targets):
            raise RuntimeError(f"swap recomputed {stats.recomputed} of {len(merger.targets)} tensors")
        swaps.append(stats.seconds)
    seconds, mem_s = min(merges), min(copies)
    cache_bytes = merger.cache.nbytes()
    del inputs, merger, pool
    gc.collect()
    gbps = gbytes / seconds
    memcpy_gbps = gbytes / mem_s
    return {
        "method": method,
        "n_experts": n_experts,
        "n_params": n_params,
        "seconds": round(seconds, 4),
        "gbytes_read": round(gbytes, 4),
        "gbps": round(gbps, 3),
        "memcpy_gbps": round(memcpy_gbps, 3),
        "ratio_to_memcpy": round(gbps / memcpy_gbps, 3),
        "inplace_swap_seconds": round(min(swaps), 4),
        "first_apply_seconds": round(first_apply_seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "search_cache_bytes": cache_bytes,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--experts", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--no-search-cache", dest="search_cache", action="store_false", help="merge without the engine's search cache"
    )
    parser.add_argument(
        "--root", type=Path, default=Path(tempfile.gettempdir()) / "evomerge-bench" / "smollm2-135m-shapes"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    root = args.root.resolve()
    if Path(__file__).resolve().parents[1] in root.parents:
        parser.error("--root must be outside the repository (checkpoints are hundreds of MB)")
    t0 = time.perf_counter()
    paths = build_checkpoints(root, max(args.experts))
    print(f"checkpoints ready under {root} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    from transformers import AutoModelForCausalLM

    live = AutoModelForCausalLM.from_pretrained(paths["base"], dtype=torch.float32).eval()
    for n in args.experts:
        for method in args.methods:
            print(json.dumps(measure(method, paths, n, live, args.repeats, args.search_cache)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
