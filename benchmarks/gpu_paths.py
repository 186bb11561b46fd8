"""The GPU code paths a search takes, each checked once, one JSON line per check (``check``, ``ok``):

- ``device_auto``: ``evaluator.device: auto`` resolves to ``cuda`` when a GPU is visible;
- ``bf16_cuda``: a bf16 merge in place on the device (task_arithmetic, ties, dare_ties) against the
  same merge on the CPU — deterministic methods within one bf16 rounding step (CUDA and CPU
  kernels may round differently), and a resident merge against an offloaded one on the device
  (the side-stream prefetch path): bit for bit;
- ``oom_recovery``: a candidate that runs the device out of memory is a failed result, the worker
  keeps its live model, and the next candidate's merge equals the same recipe merged before;
- ``inprocess_search``: ``evomerge run`` with the in-process backend on the one device
  (``device: auto``, bf16, ``memory: auto``) completes its evaluations, all ``ok``.

``--dry-run``: the same on the CPU (``device_auto`` then expects ``cpu``; the OOM is simulated with a
``MemoryError``). Tiny models are built under a temporary directory; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch


def emit(check: str, ok: bool, **fields) -> None:
    print(json.dumps({"benchmark": "gpu_paths", "check": check, "ok": bool(ok), **fields}), flush=True)


def recipe(family, method: str, w: float, dtype: str = "bfloat16"):
    from evomerge.merge.recipes import parse_recipe

    models = []
    for k, e in enumerate(family["experts"]):
        params = {"weight": round(w + 0.2 * k, 4)}
        if method != "task_arithmetic":
            params["density"] = 0.5
        models.append({"model": str(e), "parameters": params})
    return parse_recipe(
        {"merge_method": method, "base_model": str(family["base"]), "models": models, "dtype": dtype, "seed": 1}
    )


def states_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def max_ulps(a, b) -> float:
    """Largest difference, in units of the bf16 spacing at that value, between two models' weights."""
    worst = 0.0
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        x, y = sa[k].float().cpu(), sb[k].float().cpu()
        spacing = torch.maximum(x.abs(), y.abs()).clamp(min=1e-30) * 2.0**-7
        worst = max(worst, float(((x - y).abs() / spacing).max()))
    return worst


def check_bf16(family, device: str) -> None:
    from evomerge.merge.live import LiveModels

    base, experts = str(family["base"]), [str(e) for e in family["experts"]]
    on_device = LiveModels(base, experts, device=device, dtype="bfloat16", memory="gpu")
    offloaded = LiveModels(base, experts, device=device, dtype="bfloat16", memory="offload")
    on_cpu = LiveModels(base, experts, device="cpu", dtype="bfloat16")
    results = {}
    for method in ("task_arithmetic", "ties", "dare_ties"):
        r = recipe(family, method, 0.4)
        a, _ = on_device.build(r)
        b, _ = offloaded.build(r)
        c, _ = on_cpu.build(r)
        results[method] = {"offload_equal": states_equal(a, b), "max_ulps_vs_cpu": round(max_ulps(a, c), 2)}
    ok = all(v["offload_equal"] for v in results.values()) and all(
        results[m]["max_ulps_vs_cpu"] <= 1.0 for m in ("task_arithmetic", "ties")
    )
    emit("bf16_cuda", ok, device=device, placement=offloaded.placement.describe(), methods=results)


def check_oom(family, device: str, dry: bool) -> None:
    from evomerge.evaluator import EvalRequest, FunctionWorkerSpec
    from evomerge.evaluator.worker import Worker

    spec = FunctionWorkerSpec(
        "gpu_paths:oom_worker",
        kwargs={
            "base": str(family["base"]),
            "experts": [str(e) for e in family["experts"]],
            "device": device,
            "dry": dry,
        },
        factory=True,
    )
    worker = Worker(spec, worker_id="check")
    r = {"method": "ties", "w": 0.3}
    first = worker.evaluate(EvalRequest(0, r, "calibration", None))
    failed = worker.evaluate(EvalRequest(1, {**r, "oom": True}, "calibration", None))
    again = worker.evaluate(EvalRequest(2, r, "calibration", None))
    ok = (
        first.status == "ok"
        and failed.status == "failed"
        and ("OutOfMemory" in failed.error or "MemoryError" in failed.error)
        and again.status == "ok"
        and again.objectives == first.objectives
    )
    emit(
        "oom_recovery",
        ok,
        device=device,
        error=(failed.error or "").splitlines()[0][:160],
        objectives=[first.objectives, again.objectives],
    )


def oom_worker(base, experts, device, dry):
    """A merge worker whose ``oom`` requests allocate more than the device holds after merging."""
    from evomerge.merge.live import LiveModels

    live = LiveModels(base, experts, device=device, dtype="bfloat16")
    family = {"base": base, "experts": experts}

    def evaluate(r):
        model, _ = live.build(recipe(family, r["method"], r["w"]))
        if r.get("oom"):
            if dry:
                raise MemoryError("simulated out of memory (dry run)")
            torch.empty(1 << 44, dtype=torch.uint8, device=device)  # 16 TiB
        digest = sum(float(p.detach().float().sum()) for p in model.parameters())
        return {"checksum": digest}

    evaluate.reset = live.reset
    return evaluate


def check_search(family, root: Path) -> None:
    import yaml

    from evomerge.cli import main as cli

    rows = [{"q": f"{a}+{b}=", "a": str(a + b)} for a in range(10) for b in range(3)]
    (root / "add.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "models": {
            "base": str(family["base"]),
            "experts": {f"e{k}": str(e) for k, e in enumerate(family["experts"], start=1)},
        },
        "space": {"kind": "parameter", "method": "dare_ties", "layer_groups": 2},
        "driver": {"name": "cmaes", "options": {"population_size": 4}},
        "fitness": {
            "tasks": [
                {
                    "name": "add",
                    "source": {"type": "jsonl", "path": "add.jsonl"},
                    "fields": {"prompt": "q", "answer": "a"},
                    "scorer": {"type": "exact_match", "max_new_tokens": 2},
                    "splits": {"calibration": 12, "validation": 8, "seed": 0},
                }
            ]
        },
        "budget": {"max_evals": 8},
        "evaluator": {"backend": "inprocess", "device": "auto", "dtype": "bfloat16", "memory": "auto"},
        "run": {"seed": 0},
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = cli(["run", str(path), "--run-dir", str(root / "run")])
    records = [json.loads(line) for line in (root / "run" / "evaluations.jsonl").read_text().splitlines() if line]
    statuses = [r.get("status") for r in records]
    emit(
        "inprocess_search",
        code == 0 and len(records) == 8 and set(statuses) == {"ok"},
        rc=code,
        evaluations=len(records),
        statuses=sorted(set(statuses)),
        merge_seconds=[round(float(r.get("merge_seconds", 0)), 4) for r in records],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the OOM worker is found as gpu_paths:oom_worker

    from evomerge.dtypes import resolve_device
    from evomerge.testing import build_family

    device = resolve_device("auto")
    expected = "cpu" if args.dry_run else "cuda"
    emit("device_auto", device == expected, device=device, cuda_available=torch.cuda.is_available())
    with tempfile.TemporaryDirectory(prefix="evomerge-gpu-paths-") as tmp:
        root = Path(tmp)
        family = build_family(root / "family", "llama", n_experts=2, hidden=64, vocab_size=300)
        check_bf16(family, device)
        check_oom(family, device, args.dry_run)
        check_search(family, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
