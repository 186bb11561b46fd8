"""A real ``evomerge run`` at a model size, per merge method: time to the first evaluation, the merge
seconds of every candidate, and peak memory against the placement plan.

Builds (once, under ``$TMPDIR/evomerge-bench/search-<shape>/``, never in the repository) a random
Llama of the shape in bf16 and ``--experts`` experts (base + N(0, 0.01²) per tensor) as ordinary
checkpoint directories with a word-level tokenizer, and a JSONL task of ``--examples`` prompts
scored by NLL. Then, for each method, one ``evomerge run`` (CMA-ES over two layer groups, the
in-process backend, ``--evals`` evaluations) in a child process under ``memwatch.py`` (which stops
it if the host's free memory falls below ``--floor-gib``), and prints one JSON line:

- ``first_eval_seconds``: from starting the child process to the first logged evaluation (imports,
  planning, loading, the task vectors, the first merge and its evaluation);
- ``merge_seconds``: every candidate's, as the log has them; ``steady_merge_seconds`` their median
  after the first; ``eval_seconds`` likewise;
- ``peak_anon_gib`` / ``peak_rss_gib`` / ``peak_file_gib``: sampled peaks of the child process;
  ``planned_gib``: the placement's plan for this worker (:mod:`evomerge.merge.placement`).

Run: ``nice -n 10 .venv/bin/python benchmarks/search_cost.py --shape 1.1b --experts 3`` (needs about
2.2 GB of disk per model at 1.1B, and ``free -g`` well above the plan).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidate_cost import SHAPES, NoisyCheckpoint, build_base, word_tokenizer  # noqa: E402

HERE = Path(__file__).resolve().parent


def build_models(root: Path, shape: str, experts: int) -> dict:
    """base/ and expert_1..n/ under ``root`` (a ``.done`` marker per model: built once)."""
    from safetensors.torch import save_file

    dirs = {"base": root / "base", "experts": [root / f"expert_{k}" for k in range(1, experts + 1)]}
    if all((d / ".done").exists() for d in [dirs["base"], *dirs["experts"]]):
        return dirs
    config, model = build_base(shape, torch.device("cpu"), torch.bfloat16)
    tokenizer = word_tokenizer(config.vocab_size)
    if not (dirs["base"] / ".done").exists():
        model.save_pretrained(dirs["base"])
        tokenizer.save_pretrained(dirs["base"])
        (dirs["base"] / ".done").touch()
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    for k, d in enumerate(dirs["experts"], start=1):
        if (d / ".done").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        noisy = NoisyCheckpoint(state, seed=k)
        save_file(
            {n: noisy.get(n).contiguous() for n in state}, str(d / "model.safetensors"), metadata={"format": "pt"}
        )
        config.save_pretrained(d)
        tokenizer.save_pretrained(d)
        (d / ".done").touch()
    return dirs


def write_config(root: Path, dirs: dict, method: str, args) -> Path:
    import yaml

    g = torch.Generator().manual_seed(0)
    vocab = SHAPES[args.shape]["vocab_size"]
    rows = []
    for _ in range(args.examples):
        ids = torch.randint(10, vocab, (args.prompt_len + 2,), generator=g).tolist()
        rows.append({"q": " ".join(f"<{t}>" for t in ids[:-2]), "a": " ".join(f"<{t}>" for t in ids[-2:])})
    (root / "task.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "models": {"base": str(dirs["base"]), "experts": {f"e{k}": str(d) for k, d in enumerate(dirs["experts"], 1)}},
        "space": {"kind": "parameter", "method": method, "layer_groups": 2},
        "driver": {"name": "cmaes", "options": {"population_size": 4}},
        "fitness": {
            "tasks": [
                {
                    "name": "t",
                    "source": {"type": "jsonl", "path": str(root / "task.jsonl")},
                    "fields": {"prompt": "q", "answer": "a"},
                    "answer_template": " {answer}",
                    "scorer": {"type": "nll"},
                    "splits": {"calibration": args.examples - 2, "validation": 2, "seed": 0},
                }
            ]
        },
        "budget": {"max_evals": args.evals},
        "evaluator": {
            "backend": "inprocess",
            "device": "cpu",
            "dtype": "bfloat16",
            "batch_size": args.examples,
            "memory": "auto",
        },
        "run": {"seed": 0},
    }
    path = root / f"{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def planned_gib(dirs: dict) -> float:
    from evomerge.merge.placement import plan_for_pool
    from evomerge.pool import ModelPool

    pool = ModelPool(str(dirs["base"]), [str(d) for d in dirs["experts"]], dtype=torch.bfloat16)
    return round(plan_for_pool(pool, device="cpu", dtype_bytes=2).device_bytes / 2**30, 2)


def run_method(root: Path, config: Path, method: str, args) -> dict:
    run_dir = root / f"run-{method}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    argv = [
        sys.executable,
        str(HERE / "memwatch.py"),
        "--floor-gib",
        str(args.floor_gib),
        "--",
        "evomerge",
        "run",
        str(config),
        "--run-dir",
        str(run_dir),
    ]
    start = time.time()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=args.timeout)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:  # killed: what the log holds so far is still reported
        rc, stdout = "timeout", exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = f"timed out after {args.timeout} s"
    watch = next((json.loads(line) for line in stdout.splitlines() if line.startswith('{"memwatch"')), {})
    log = run_dir / "evaluations.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line] if log.exists() else []
    merges = [round(float(r["merge_seconds"]), 3) for r in records]
    evals = [round(float(r["eval_seconds"]), 3) for r in records]
    peaks = watch.get("memwatch", {})
    return {
        "method": method,
        "rc": rc,
        "evaluations": len(records),
        "ok": sum(r.get("status") == "ok" for r in records),
        "first_eval_seconds": round(min(float(r["finished"]) for r in records) - start, 2) if records else None,
        "merge_seconds": merges,
        "steady_merge_seconds": statistics.median(merges[1:]) if len(merges) > 1 else None,
        "eval_seconds_median": statistics.median(evals) if evals else None,
        "peak_anon_gib": peaks.get("anon_gib"),
        "peak_rss_gib": peaks.get("rss_gib"),
        "peak_file_gib": peaks.get("file_gib"),
        "min_available_gib": peaks.get("min_available_gib"),
        "wall_seconds": watch.get("seconds"),
        "stderr_tail": stderr.strip().splitlines()[-1][:200] if rc and stderr.strip() else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["task_arithmetic", "ties", "dare_ties"])
    parser.add_argument("--evals", type=int, default=6)
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--prompt-len", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor-gib", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--root", default=None, help="where models and runs go (default: $TMPDIR/evomerge-bench)")
    args = parser.parse_args(argv)
    root = Path(args.root or Path(tempfile.gettempdir()) / "evomerge-bench") / f"search-{args.shape}-{args.experts}"
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dirs = build_models(root, args.shape, args.experts)
    plan = planned_gib(dirs)
    print(
        json.dumps(
            {
                "benchmark": "search_cost",
                "kind": "setup",
                "shape": args.shape,
                "experts": args.experts,
                "build_seconds": round(time.perf_counter() - t0, 1),
                "planned_gib": plan,
                "threads": args.threads,
            }
        ),
        flush=True,
    )
    for method in args.methods:
        result = run_method(root, write_config(root, dirs, method, args), method, args)
        print(
            json.dumps(
                {
                    "benchmark": "search_cost",
                    "kind": "search",
                    "shape": args.shape,
                    "experts": args.experts,
                    "planned_gib": plan,
                    **result,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
