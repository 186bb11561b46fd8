"""What one search candidate costs: an in-place merge into a resident model, against writing the
merged model to disk and reloading it (how Mergenetic, OptunaHub's merge sampler and
mergekit-evolve's on-disk mode evaluate a candidate).

Models are random Llamas of a real model's shape, built in bf16 directly on the chosen device —
nothing is downloaded and nothing is written for the in-place path: the base is a model instance,
each expert is ``base + N(0, σ²)`` generated per tensor on demand (a checkpoint held in memory,
:meth:`evomerge.pool.ModelPool.from_checkpoints`), so only the task vectors are kept. Placement
is the run's own (:mod:`evomerge.merge.placement`, ``--memory auto | gpu | offload``).

One JSON object per line:

- ``kind: setup`` — shape, parameters, device, dtype, the placement line, the device's copy
  bandwidth ``copy_gbps`` (``Tensor.copy_`` of a bf16 buffer, bytes read + written per second,
  best of 5, in the same run) and, when offloaded, the host → device bandwidth ``h2d_gbps``;
  ``warm_seconds``: computing the task vectors once;
- ``kind: merge`` — per method: ``first_seconds`` (the first candidate: the search cache is built),
  ``steady_seconds`` (median of ``--candidates`` later candidates, every tensor recomputed: each
  moves every weight and density), ``bound_seconds`` (the bytes a merge must move — base and task
  vectors read, the model written — at ``copy_gbps``; offloaded, at most the host → device copy of
  the inputs) and ``ratio_to_bound``;
- ``kind: disk_baseline`` — per method, one candidate merged, written as safetensors and reloaded
  with ``from_pretrained`` onto the device (the baseline reads its inputs from memory, not from
  disk as those tools do: a lower bound on their cost); ``speedup`` = its seconds / the in-place
  steady seconds; ``equal``: the reloaded weights equal the in-place ones;
- ``kind: eval`` — per inference engine (:data:`evomerge.fitness.engines.ENGINES`, the HF engine
  with each generation mode): greedy generation of ``--new-tokens`` for ``--prompts`` random
  prompts, ``generated_tokens_per_s`` and ``tokens_per_s`` (prompt + generated tokens);
- ``kind: memory`` — peak host memory (``VmRSS`` / ``RssAnon`` / ``RssFile``, sampled) and the
  device's peak allocated / reserved memory.

Shapes: ``tiny`` (CI), ``135m`` (SmolLM2-135M), ``1.1b`` (TinyLlama-1.1B), ``1b`` (Llama-3.2-1B),
``7b`` (Mistral-7B), ``8b`` (Llama-3-8B). Run: ``nice -n 10 .venv/bin/python
benchmarks/candidate_cost.py --shape 1.1b --experts 3`` (``--floor-gib``: stop when the host's free
memory falls below it; ``--threads``: torch threads, default 1).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from evomerge.pool import StateCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memwatch import MemoryWatch  # noqa: E402


def _llama(vocab, hidden, intermediate, layers, heads, kv_heads, tied) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tied,
    )


SHAPES = {  # name: (vocabulary, hidden, intermediate, layers, heads, KV heads, tied embeddings)
    "tiny": _llama(512, 64, 128, 2, 4, 2, False),
    "135m": _llama(49152, 576, 1536, 30, 9, 3, True),  # SmolLM2-135M
    "1.1b": _llama(32000, 2048, 5632, 22, 32, 4, False),  # TinyLlama-1.1B
    "1b": _llama(128256, 2048, 8192, 16, 32, 8, True),  # Llama-3.2-1B
    "7b": _llama(32000, 4096, 14336, 32, 32, 8, False),  # Mistral-7B
    "8b": _llama(128256, 4096, 14336, 32, 32, 8, False),  # Llama-3-8B
}
DENSE = ("task_arithmetic", "linear", "slerp", "model_stock")


def emit(**fields) -> None:
    print(json.dumps({"benchmark": "candidate_cost", **fields}), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class NoisyCheckpoint(StateCheckpoint):
    """An expert held in memory as its recipe: the base's tensors plus seeded noise, made on demand."""

    def __init__(self, base: dict[str, torch.Tensor], seed: int, scale: float = 0.01):
        super().__init__(base)
        self.seed, self.scale = seed, scale

    def get(self, name):
        t = self.state[name]
        digest = hashlib.blake2b(f"{self.seed}\x00{name}".encode(), digest_size=8).digest()
        g = torch.Generator(device=t.device).manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        noise = torch.randn(t.shape, generator=g, device=t.device, dtype=torch.float32).mul_(self.scale)
        return (t.float() + noise).to(t.dtype)


def build_base(shape: str, device: torch.device, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, rms_norm_eps=1e-5)
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return config, model.eval()


def copy_gbps(device: torch.device, dtype: torch.dtype, entries: int) -> float:
    src = torch.ones(entries, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * src.element_size() / best / 1e9


def h2d_gbps(device: torch.device, dtype: torch.dtype, entries: int) -> float:
    src = torch.ones(entries, dtype=dtype).pin_memory()
    dst = torch.empty(entries, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src, non_blocking=True)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return src.numel() * src.element_size() / best / 1e9


def recipe(method: str, base: str, experts: list[str], dtype: str, shift: float):
    from evomerge.merge.recipes import parse_recipe

    models = []
    for k, e in enumerate(experts):
        params = {"weight": round(0.4 + 0.1 * k + shift * (1 if k % 2 else -1), 6)}
        if method not in DENSE:
            params["density"] = round(0.45 + 0.05 * k + shift, 6)
        models.append({"model": e, "parameters": params})
    return parse_recipe({"merge_method": method, "base_model": base, "models": models, "dtype": dtype, "seed": 0})


def word_tokenizer(vocab_size: int):
    """One token per id (``<i>``), so any generated id decodes; pad 0, eos 2."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<{i}>": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<3>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<0>", bos_token="<1>", eos_token="<2>", unk_token="<3>", padding_side="left"
    )


def engines():
    """(label, options) for each registered engine; the HF engine once per generation mode."""
    from evomerge.fitness.engines import ENGINES

    out = []
    for name in ENGINES:
        options_cls = ENGINES.get(name).Options
        modes = options_cls.model_fields.get("generation")
        if modes is not None and name == "hf":
            out += [(f"{name}:{m}", options_cls(generation=m)) for m in ("generate", "loop")]
        else:
            out.append((name, options_cls()))
    return out


def measure_eval(model, vocab_size: int, args, device: torch.device) -> None:
    from evomerge.fitness.engines import build_engine

    tokenizer = word_tokenizer(vocab_size)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, vocab_size, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    for label, options in engines():
        engine = build_engine(options, model, tokenizer)
        kwargs = dict(max_new_tokens=args.new_tokens, stop_strings=(), eos=set(), batch_size=args.batch)
        engine.generate(prompts[: args.batch], **kwargs)  # warm-up: kernels, allocator
        sync(device)
        t0 = time.perf_counter()
        out = engine.generate(prompts, **kwargs)
        sync(device)
        seconds = time.perf_counter() - t0
        generated = sum(len(ids) for ids in out.ids)
        emit(
            kind="eval",
            engine=label,
            prompts=len(prompts),
            prompt_len=args.prompt_len,
            new_tokens=args.new_tokens,
            batch=args.batch,
            seconds=round(seconds, 4),
            generated_tokens_per_s=round(generated / seconds, 2),
            tokens_per_s=round(out.tokens / seconds, 2),
        )


def disk_baseline(r, pool, live, config, device, dtype, workdir: Path, inplace_seconds: float) -> None:
    """One candidate merged, written (safetensors shards of ≤ 2 GB), reloaded onto the device."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from evomerge.merge.apply import merged_tensors

    out = workdir / "candidate"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sync(device)
    t0 = time.perf_counter()
    shard, size, index, weight_map = {}, 0, 0, {}

    def flush():
        nonlocal shard, size, index
        if shard:
            index += 1
            fname = f"model-{index:05d}.safetensors"
            save_file(shard, str(out / fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in shard})
            shard, size = {}, 0

    merge_seconds = 0.0
    for name, tensor in merged_tensors(r, pool, device="cpu"):
        shard[name] = tensor.contiguous()
        size += tensor.numel() * tensor.element_size()
        if size >= 2 * 10**9:
            flush()
    flush()
    merge_seconds = time.perf_counter() - t0
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config.save_pretrained(out)
    written = time.perf_counter()
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=dtype).to(device).eval()
    sync(device)
    done = time.perf_counter()
    theirs, ours = reloaded.state_dict(), live.state_dict()
    equal = all(torch.equal(theirs[k], ours[k]) for k in ours)
    del reloaded, theirs
    shutil.rmtree(out, ignore_errors=True)
    total = done - t0
    emit(
        kind="disk_baseline",
        method=r.merge_method,
        merge_and_write_seconds=round(merge_seconds, 4),
        reload_seconds=round(done - written, 4),
        seconds=round(total, 4),
        inplace_seconds=round(inplace_seconds, 4),
        speedup=round(total / inplace_seconds, 2),
        equal=equal,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["task_arithmetic", "ties", "dare_ties"])
    parser.add_argument("--candidates", type=int, default=3, help="steady-state candidates per method")
    parser.add_argument("--memory", default="auto", choices=["auto", "gpu", "offload"])
    parser.add_argument("--search-cache", default="auto")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--no-disk-baseline", action="store_true")
    parser.add_argument("--disk-methods", nargs="+", default=None, help="methods the disk baseline runs for (all)")
    parser.add_argument("--workdir", default=None, help="where the disk baseline writes (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor-gib", type=float, default=3.0)
    args = parser.parse_args(argv)

    from evomerge.dtypes import resolve_device, torch_dtype
    from evomerge.merge.apply import InPlaceMerger
    from evomerge.merge.cache import MergeCache
    from evomerge.merge.placement import MemoryGuard, ModelSize, free_memory, plan_placement
    from evomerge.pool import ModelPool

    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device))
    dtype = torch_dtype(args.dtype)
    cache_arg = int(args.search_cache) if args.search_cache.isdigit() else args.search_cache
    with MemoryWatch(args.floor_gib) as watch:
        free = free_memory(str(device))  # before anything is built: what a worker would see
        t0 = time.perf_counter()
        config, base_model = build_base(args.shape, device, dtype)
        build_seconds = time.perf_counter() - t0
        base_state = {k: v.detach() for k, v in base_model.state_dict().items()}
        base_id, expert_ids = "base", [f"expert_{k}" for k in range(1, args.experts + 1)]
        ckpts = {base_id: StateCheckpoint(base_state)}
        ckpts.update({e: NoisyCheckpoint(base_state, seed=k) for k, e in enumerate(expert_ids, start=1)})
        pool = ModelPool.from_checkpoints(base_id, expert_ids, ckpts, config.to_dict(), dtype=dtype)
        size = ModelSize.of(pool)
        placement = plan_placement(
            size,
            experts=args.experts,
            dtype_bytes=dtype.itemsize,
            device=str(device),
            memory=args.memory,
            search_cache=cache_arg,
            free=free,
        )
        pool.place(placement.store, compute_device=device, pin=placement.pin)
        live = copy.deepcopy(base_model)
        t0 = time.perf_counter()
        pool.warm()
        sync(device)
        warm_seconds = time.perf_counter() - t0
        if placement.stream:  # the pool holds its own copies now: the device keeps only the live model
            del base_model, base_state, ckpts
            if device.type == "cuda":
                torch.cuda.empty_cache()
        else:
            del base_model
        cache = MergeCache(
            search=placement.search_cache_bytes > 0,
            search_bytes=placement.search_cache_bytes,
            fits=MemoryGuard(str(device), placement.reserve_bytes),
        )
        merger = InPlaceMerger(pool, live, cache=cache, device=device, stream=placement.stream)
        copy_entries = min(size.params, 1 << 28 if device.type == "cuda" else 1 << 26)
        gbps = copy_gbps(device, dtype, copy_entries)
        h2d = h2d_gbps(device, dtype, min(size.params, 1 << 28)) if placement.stream and device.type == "cuda" else None
        emit(
            kind="setup",
            shape=args.shape,
            n_params=size.params,
            largest_tensor=size.largest,
            experts=args.experts,
            device=str(device),
            dtype=args.dtype,
            threads=args.threads,
            placement=placement.describe(),
            build_seconds=round(build_seconds, 3),
            warm_seconds=round(warm_seconds, 3),
            copy_gbps=round(gbps, 2),
            h2d_gbps=None if h2d is None else round(h2d, 2),
        )

        moved = (args.experts + 2) * size.params * dtype.itemsize  # base + τ read, the model written
        bound = moved / (gbps * 1e9)
        if h2d is not None:
            bound = max(bound, (args.experts + 1) * size.params * dtype.itemsize / (h2d * 1e9))
        workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="evomerge-candidate-cost-"))
        with torch.no_grad():
            for method in args.methods:
                cache.clear()
                first = recipe(method, base_id, expert_ids, args.dtype, 0.0)
                sync(device)
                t0 = time.perf_counter()
                merger.apply(first)
                sync(device)
                first_seconds = time.perf_counter() - t0
                steady = []
                for c in range(1, args.candidates + 1):
                    r = recipe(method, base_id, expert_ids, args.dtype, 0.01 * c)
                    sync(device)
                    t0 = time.perf_counter()
                    stats = merger.apply(r)
                    sync(device)
                    steady.append(time.perf_counter() - t0)
                    assert stats.skipped == 0  # every tensor recomputed: a fair candidate
                median = statistics.median(steady)
                emit(
                    kind="merge",
                    method=method,
                    experts=args.experts,
                    first_seconds=round(first_seconds, 4),
                    steady_seconds=round(median, 4),
                    steady_min_seconds=round(min(steady), 4),
                    bound_seconds=round(bound, 5),
                    ratio_to_bound=round(median / bound, 2),
                    search_cache_bytes=cache.nbytes(),
                )
                if not args.no_disk_baseline and method in (args.disk_methods or args.methods):
                    disk_baseline(r, pool, live, config, device, dtype, workdir, median)
        if not args.no_eval:
            measure_eval(live, config.vocab_size, args, device)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    device_peak = {}
    if device.type == "cuda":
        device_peak = {
            "device_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3),
            "device_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 3),
        }
    emit(
        kind="memory",
        **watch.peaks(),
        **device_peak,
        planned_device_gib=round(placement.device_bytes / 2**30, 3),
        planned_host_gib=round(placement.host_bytes / 2**30, 3),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
