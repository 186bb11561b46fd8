"""benchmarks/candidate_cost.py at the tiny shape: every line it promises, the disk baseline's
reloaded weights equal to the in-place merge, and a plan the run stayed within."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_candidate_cost_tiny_prints_every_line(tmp_path):
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "candidate_cost.py"),
        "--shape",
        "tiny",
        "--device",
        "cpu",
        "--experts",
        "2",
        "--methods",
        "task_arithmetic",
        "ties",
        "dare_ties",
        "--candidates",
        "2",
        "--prompts",
        "2",
        "--new-tokens",
        "2",
        "--batch",
        "2",
        "--workdir",
        str(tmp_path),
        "--floor-gib",
        "0.5",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "setup" and kinds[-1] == "memory"
    setup = lines[0]
    assert setup["placement"].startswith("memory plan: gpu — live model on cpu") and setup["copy_gbps"] > 0
    merges = {line["method"]: line for line in lines if line["kind"] == "merge"}
    assert set(merges) == {"task_arithmetic", "ties", "dare_ties"}
    assert all(m["steady_seconds"] > 0 and m["ratio_to_bound"] > 0 for m in merges.values())
    baselines = [line for line in lines if line["kind"] == "disk_baseline"]
    assert [b["method"] for b in baselines] == ["task_arithmetic", "ties", "dare_ties"]
    assert all(b["equal"] for b in baselines)  # the reloaded checkpoint is the in-place merge
    engines = {line["engine"] for line in lines if line["kind"] == "eval"}
    assert {"hf:generate", "hf:loop"} <= engines
    memory = lines[-1]
    assert 0 < memory["anon_gib"] <= memory["rss_gib"] and memory["planned_device_gib"] > 0
    assert not list(tmp_path.iterdir())  # the baseline's checkpoints are removed
