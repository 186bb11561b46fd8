"""A run no single candidate can stop, and that says when it cannot succeed: candidates that kill
the process (os._exit, stuck in native code) are failed after run.max_attempts deaths; a backend
that fails to start leaves no half-made run directory; the failure breaker; a dead run's status."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evomerge.cli import main
from evomerge.config import load_config
from evomerge.evaluator import FunctionWorkerSpec, InProcessBackend
from evomerge.runs.api import resume, run
from evomerge.runs.breaker import FailureBreaker
from evomerge.runs.plan import build_plan
from evomerge.runs.store import RunStore
from evomerge.runs.summary import outcome

HERE = Path(__file__).parent


def _digits(tmp_path: Path, name="d", **sections) -> Path:
    path = tmp_path / f"{name}.yaml"
    doc = {"problem": "digits", "driver": {"name": "random"}, "budget": {"max_evals": 8}, "run": {"seed": 3}}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(doc))
    return path


def _poison(*args):
    return subprocess.run(
        [sys.executable, str(HERE / "poison_run.py"), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_a_candidate_that_kills_the_process_is_failed_after_max_attempts_deaths(tmp_path):
    cfg, run_dir = _digits(tmp_path), tmp_path / "run"
    first = _poison("run", cfg, run_dir, "exit", 3)
    assert first.returncode == 9, first.stderr
    assert [r["id"] for r in RunStore(run_dir).read_log()] == [0, 1, 2]
    assert json.loads((run_dir / "attempts.json").read_text()) == {"running": 3, "deaths": {}}
    second = _poison("resume", cfg, run_dir, "exit", 3)
    assert second.returncode == 9
    assert "warning: the previous process died while evaluating candidate 3 (1 time(s) so far)" in second.stderr
    third = _poison("resume", cfg, run_dir, "exit", 3)
    assert third.returncode == 0, third.stderr
    assert "warning: the previous process died while evaluating candidate 3 (2 time(s) so far)" in third.stderr
    records = RunStore(run_dir).read_log()
    assert [r["id"] for r in records] == list(range(8))
    assert [r["status"] for r in records] == ["ok"] * 3 + ["failed"] + ["ok"] * 4
    assert records[3]["error"] == (
        "CandidateKilledProcess: the process died 2 times while evaluating candidate 3 (out of memory, a crash in "
        "native code, os._exit?); recorded as failed without evaluating it again (run.max_attempts=2)"
    )
    assert json.loads((run_dir / "attempts.json").read_text()) == {"running": None, "deaths": {"3": 2}}


def test_an_evaluation_stuck_in_native_code_stops_the_run_resumably_and_counts(tmp_path):
    cfg, run_dir = _digits(tmp_path, run={"max_attempts": 1}), tmp_path / "run"
    first = _poison("run", cfg, run_dir, "stuck", 2)
    assert first.returncode == 3
    assert first.stderr.strip().splitlines()[-1] == (
        "error: candidate 2 has run 1 s, past evaluator.timeout=0.5 s, in code that cannot be interrupted; the "
        "process stops here and the run can be resumed (the candidate counts one attempt; after run.max_attempts "
        "it is recorded as failed)"
    )
    second = _poison("resume", cfg, run_dir, "stuck", 2)
    assert second.returncode == 0, second.stderr
    records = RunStore(run_dir).read_log()
    assert [r["id"] for r in records] == list(range(8))
    assert records[2]["status"] == "failed" and records[2]["error"].startswith(
        "CandidateKilledProcess: the process died 1 times while evaluating candidate 2"
    )


def test_a_hung_python_evaluation_is_failed_and_the_run_goes_on(tmp_path):
    cfg = load_config(_digits(tmp_path))
    plan = build_plan(cfg)
    plan.make_backend = lambda: InProcessBackend(FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere"), timeout=0.2)
    calls = []

    def to_recipe(genome):
        calls.append(genome)
        return {"genome": [0.3], "sleep": 5 if len(calls) in (2, 5) else 0}

    plan.problem.to_recipe = to_recipe
    started = time.monotonic()
    s = run(cfg, tmp_path / "run", plan=plan, progress=False)
    assert time.monotonic() - started < 30
    errors = [r["error"] for r in RunStore(tmp_path / "run").read_log()]
    assert s["evaluations"] == 8
    timed_out = "EvaluationTimeout: evaluation exceeded its time limit of 0.2 s"
    assert [i for i, e in enumerate(errors) if e == timed_out] == [1, 4]


def _failing_plan(cfg):
    """The digits run's plan, but every candidate fails (the sphere reports no train_accuracy)."""
    plan = build_plan(cfg)
    plan.make_backend = lambda: InProcessBackend(FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere"))
    return plan


def test_the_failure_breaker_stops_a_run_whose_first_candidates_all_fail(tmp_path):
    cfg = load_config(_digits(tmp_path, run={"failure_breaker": {"first": 3}}))
    s = run(cfg, tmp_path / "run", plan=_failing_plan(cfg), progress=False)
    assert s["evaluations"] == 3 and s["stop_reason"] == "failure_breaker"
    assert outcome(s) == (
        1,
        "error: the run stopped: the first 3 candidates all failed; most common error (3 of 3): result has no "
        "objective train_accuracy (got score); fix the cause, then resume it",
    )
    # fixed (the real worker again): the resume continues, and the breaker counts afresh
    done = resume(tmp_path / "run", progress=False)
    assert done["evaluations"] == 8 and outcome(done) == (0, None)


def test_a_run_with_no_successful_candidate_exits_non_zero(tmp_path):
    cfg = load_config(_digits(tmp_path, run={"failure_breaker": {"first": 0, "window": 0}}))
    s = run(cfg, tmp_path / "run", plan=_failing_plan(cfg), progress=False)
    assert s["stop_reason"] is not None and s["evaluations"] == 8
    assert outcome(s) == (
        1,
        "error: no candidate succeeded in 8 evaluations; most common error (8 of 8): result has no objective "
        "train_accuracy (got score)",
    )


def test_breaker_window_rule():
    b = FailureBreaker(first=0, window=4, fraction=0.5)
    said = [b.observe(ok, None if ok else f"E{i % 2}") for i, ok in enumerate([True, False, True, False, False])]
    assert said[:4] == [None] * 4  # 2 of 4 failed: not more than half
    assert said[4] == (
        "3 of the last 4 candidates failed (more than 50%); most common error (2 of 3): E1"
    )  # the window is the last 4: F T F F


def test_a_backend_that_fails_to_start_leaves_no_run_directory(tmp_path):
    cfg_path = _digits(tmp_path)
    cfg = load_config(cfg_path)

    def broken():
        raise RuntimeError("no GPU for you")

    plan = build_plan(cfg)
    plan.make_backend = broken
    with pytest.raises(RuntimeError, match="no GPU for you"):
        run(cfg, tmp_path / "new", plan=plan, progress=False)
    assert not (tmp_path / "new").exists()
    # an empty directory the user made stays, and stays empty; a file of theirs inside stays too
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(RuntimeError):
        run(cfg, mine, plan=plan, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_backend_that_fails_after_results_leaves_a_resumable_run(tmp_path):
    cfg = load_config(_digits(tmp_path))
    plan = build_plan(cfg)
    real = plan.make_backend

    class Dies:
        def __init__(self):
            self.inner, self.n = real(), 0
            self.num_workers = 1

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def wait(self, timeout=None):
            self.n += 1
            if self.n == 4:
                raise RuntimeError("the node went away")
            return self.inner.wait(timeout)

    plan.make_backend = Dies
    with pytest.raises(RuntimeError, match="the node went away"):
        run(cfg, tmp_path / "run", plan=plan, progress=False)
    assert len(RunStore(tmp_path / "run").read_log()) == 3
    assert resume(tmp_path / "run", progress=False)["evaluations"] == 8


def test_status_tells_a_dead_run_from_a_live_one(tmp_path, capsys):
    cfg, run_dir = _digits(tmp_path), tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-m", "evomerge", "run", str(cfg), "--run-dir", str(run_dir)],
        env={**os.environ, "EVOMERGE_CRASH_AT": "after-append:3"},
        capture_output=True,
    )
    assert killed.returncode == 137
    assert main(["status", str(run_dir)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((run_dir / "evaluations.jsonl").stat().st_mtime))
    assert first == f"run        {run_dir}  (dead: last written {stamp}; resume it with `evomerge resume {run_dir}`)"
    assert main(["status", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "dead"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from evomerge.runs.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('ok', flush=True); time.sleep(60)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        assert main(["status", str(run_dir)]) == 0
        assert capsys.readouterr().out.splitlines()[0] == f"run        {run_dir}  (running)"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    (run_dir / "lock").unlink()
    assert main(["status", str(run_dir)]) == 0
    assert "(dead: last written" in capsys.readouterr().out.splitlines()[0]
    assert not (run_dir / "lock").exists()  # status only probes: it never creates the lock
