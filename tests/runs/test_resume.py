"""Kill a run (crash points inside the writers, and a plain SIGKILL), resume it, and compare with an
uninterrupted run: the logs must be equal record for record apart from clock fields.

The model-free M2N2 digits problem keeps each run to seconds; the merge path is covered end to end
in test_e2e.py.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evomerge.config import load_config
from evomerge.runs.api import resume, run
from evomerge.runs.store import RunStore, comparable

MAX_EVALS = 12


def _config(tmp_path: Path, driver: dict, name: str | None = None, **sections) -> Path:
    path = tmp_path / f"{name or driver['name']}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "problem": "digits",
                "driver": driver,
                "budget": {"max_evals": MAX_EVALS},
                "run": {"seed": 3},
                **sections,
            }
        )
    )
    return path


def _cli(*args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "evomerge", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )


def _log(run_dir):
    return [comparable(r) for r in RunStore(run_dir).read_log()]


DRIVERS = {
    "random": {"name": "random"},
    "cmaes": {"name": "cmaes", "options": {"population_size": 4}},
}
#: M2N2 (what it proposes depends on every result it was told) on three in-process slots: three
#: candidates are outstanding at every checkpoint.
SLOTS = {
    "driver": {"name": "m2n2", "options": {"initial": "experts", "archive_size": 4}},
    "sections": {"evaluator": {"num_workers": 3}},
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted in-process runs, one per driver."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    configs = {name: _config(root, driver) for name, driver in DRIVERS.items()}
    configs["m2n2-slots"] = _config(root, SLOTS["driver"], "m2n2-slots", **SLOTS["sections"])
    for name, cfg_path in configs.items():
        run(load_config(cfg_path), root / name, config_path=cfg_path, progress=False)
        out[name] = (cfg_path, _log(root / name))
        assert len(out[name][1]) == MAX_EVALS
    return out


@pytest.mark.parametrize(
    "driver, crash",
    [
        ("random", "log-append:4"),  # a torn log line
        ("cmaes", "checkpoint-write:2"),  # half a checkpoint in its temporary file
        ("cmaes", "after-append:6"),  # mid-generation: logged results not yet told
    ],
)
def test_crash_then_resume_equals_uninterrupted(reference, tmp_path, driver, crash):
    cfg_path, expected = reference[driver]
    run_dir = tmp_path / "run"
    proc = _cli("run", str(cfg_path), "--run-dir", str(run_dir), env={"EVOMERGE_CRASH_AT": crash})
    assert proc.returncode == 137, proc.stderr
    assert 0 < len(RunStore(run_dir).read_log(warn=lambda m: None)) < MAX_EVALS
    resume(run_dir, progress=False)
    assert _log(run_dir) == expected
    # Nothing was evaluated twice: every id once, in order.
    assert [r["id"] for r in RunStore(run_dir).read_log()] == list(range(MAX_EVALS))


@pytest.mark.parametrize("crash", ["after-append:7", "checkpoint-write:9"])
def test_resume_takes_back_candidates_in_flight_at_the_checkpoint(reference, tmp_path, crash):
    """Three slots: every checkpoint is written while other candidates are still running. The
    restored driver holds them as pending and would never propose them again; the checkpoint
    lists them, and resume evaluates them (or takes their logged results), none lost, none twice."""
    from evomerge.runs.checkpoint import CheckpointDir

    cfg_path, expected = reference["m2n2-slots"]
    run_dir = tmp_path / "run"
    proc = _cli("run", str(cfg_path), "--run-dir", str(run_dir), env={"EVOMERGE_CRASH_AT": crash})
    assert proc.returncode == 137, proc.stderr
    _, state = CheckpointDir(run_dir / "checkpoints").load_latest(log=lambda m: None)
    assert len(state["in_flight"]) == 2 and all(f["submitted"] for f in state["in_flight"])
    assert state["n_told"] + len(state["in_flight"]) == max(f["id"] for f in state["in_flight"]) + 1
    done = _cli("resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    assert _log(run_dir) == expected
    assert [r["id"] for r in RunStore(run_dir).read_log()] == list(range(MAX_EVALS))


def test_sigkill_after_a_delay_then_cli_resume(reference, tmp_path):
    cfg_path, expected = reference["cmaes"]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evomerge", "run", str(cfg_path), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = run_dir / "evaluations.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and log.read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _cli("resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert _log(run_dir) == expected


def test_corrupted_latest_checkpoint_falls_back(reference, tmp_path):
    cfg_path, expected = reference["cmaes"]
    run_dir = tmp_path / "run"
    assert (
        _cli("run", str(cfg_path), "--run-dir", str(run_dir), env={"EVOMERGE_CRASH_AT": "after-append:11"}).returncode
        == 137
    )
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.pkl"))
    assert [p.name for p in ckpts] == ["ckpt-00000004.pkl", "ckpt-00000008.pkl"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:-10])
    done = _cli("resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert (
        f"warning: checkpoint {ckpts[-1]} is corrupted (checksum mismatch); falling back to ckpt-00000004.pkl"
        in done.stderr
    )
    assert _log(run_dir) == expected


def test_locked_run_dir_is_refused_and_left_intact(reference, tmp_path):
    cfg_path, _ = reference["random"]
    run_dir = tmp_path / "run"
    assert (
        _cli("run", str(cfg_path), "--run-dir", str(run_dir), env={"EVOMERGE_CRASH_AT": "after-append:3"}).returncode
        == 137
    )
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "lock"}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from evomerge.runs.lock import RunLock; RunLock(sys.argv[1]).acquire(); print('ok', flush=True); time.sleep(60)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        proc = _cli("resume", str(run_dir))
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: run directory {run_dir} is locked by pid {holder.pid} on {os.uname().nodename} (another evomerge process is writing it)"
    )
    after = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before


def test_run_refuses_a_dir_that_holds_a_run(reference, tmp_path):
    cfg_path, _ = reference["random"]
    run_dir = tmp_path / "run"
    assert _cli("run", str(cfg_path), "--run-dir", str(run_dir), "--max-evals", "2").returncode == 0
    proc = _cli("run", str(cfg_path), "--run-dir", str(run_dir))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: run directory {run_dir} already holds a run; continue it with `evomerge resume {run_dir}` or pick another --run-dir"
    )
    assert len(RunStore(run_dir).read_log()) == 2
