"""Run-directory building blocks: the log, checkpoints, the lock, the config's one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from evomerge.config import parse_config
from evomerge.errors import ConfigError, RunDirError
from evomerge.runs.checkpoint import CheckpointDir, decode, encode
from evomerge.runs.lock import RunLock
from evomerge.runs.store import RunStore, comparable
from evomerge.runs.summary import summarize
from evomerge.units import parse_duration


def _rec(i, score, values=None, status="ok"):
    return {
        "id": i,
        "status": status,
        "score": score,
        "values": values or [score],
        "objectives": {"a": score},
        "genome": [0.1 * i],
        "started": 100.0 + i,
        "finished": 101.0 + i,
        "worker": "w",
        "eval_seconds": 0.5,
    }


def test_log_append_read_and_torn_last_line(tmp_path):
    store = RunStore(tmp_path)
    store.create("x: 1\n")
    for i in range(3):
        store.append(_rec(i, float(i)))
    store.close()
    with open(store.log_path, "ab") as f:
        f.write(b'{"id": 3, "sta')  # killed mid-write
    warnings = []
    assert [r["id"] for r in store.read_log(warn=warnings.append)] == [0, 1, 2]
    assert "partly written line (line 4)" in warnings[0]
    assert store.log_path.read_bytes().endswith(b'"sta')  # reading alone never changes the file
    store.read_log(repair=True, warn=warnings.append)
    assert store.log_path.read_bytes().count(b"\n") == 3 and store.log_path.read_bytes().endswith(b"}\n")


def test_damaged_middle_line_is_an_error(tmp_path):
    store = RunStore(tmp_path)
    store.create("x: 1\n")
    store.append(_rec(0, 0.0))
    store.close()
    with open(store.log_path, "ab") as f:
        f.write(b"garbage\n")
        f.write((json.dumps(_rec(1, 1.0)) + "\n").encode())
    with pytest.raises(RunDirError, match="line 2 is not a valid evaluation record"):
        store.read_log()


def test_create_refuses_existing_run(tmp_path):
    RunStore(tmp_path).create("x: 1\n")
    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(RunDirError, match="already holds a run"):
        RunStore(tmp_path).create("x: 1\n")


def test_create_never_replaces_a_config_yaml_that_is_not_a_runs(tmp_path):
    (tmp_path / "config.yaml").write_text("mine: 1\n")
    with pytest.raises(RunDirError, match=r"config.yaml: a config.yaml that is not a run's .* pick another --run-dir$"):
        RunStore(tmp_path).create("x: 1\n")
    assert (tmp_path / "config.yaml").read_text() == "mine: 1\n"


def test_large_per_example_goes_beside_the_log(tmp_path):
    store = RunStore(tmp_path)
    store.create("x: 1\n")
    rec = _rec(0, 1.0)
    rec["per_example"] = {"t": [1.0] * 5000}
    store.append(rec)
    store.close()
    logged = store.read_log()[0]
    assert logged["per_example"] == {"path": "per_example/0.json"}
    assert store.per_example(logged) == {"t": [1.0] * 5000}


def test_comparable_drops_only_clock_fields():
    a = _rec(0, 1.0) | {"fitness": {"wall_seconds": 1.0, "n_evaluated": 5}}
    b = _rec(0, 1.0) | {"fitness": {"wall_seconds": 9.0, "n_evaluated": 5}, "worker": "other", "started": 0.0}
    assert comparable(a) == comparable(b)
    assert comparable(a) != comparable(a | {"score": 2.0})
    assert comparable(a)["fitness"] == {"n_evaluated": 5}


def test_checkpoint_roundtrip_keep_two_and_fallback(tmp_path):
    ck = CheckpointDir(tmp_path / "checkpoints", keep=2)
    for n in (3, 6, 9):
        ck.save(n, {"n": n})
    assert [n for n, _ in ck.list()] == [9, 6]
    path9 = ck.list()[0][1]
    data = bytearray(path9.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the payload
    path9.write_bytes(bytes(data))
    said = []
    n, state = ck.load_latest(log=said.append)
    assert (n, state) == (6, {"n": 6})
    assert said == [f"warning: checkpoint {path9} is corrupted (checksum mismatch); falling back to ckpt-00000006.ckpt"]


def test_checkpoint_bad_header():
    with pytest.raises(Exception, match="bad header"):
        decode(b"nonsense")
    assert decode(encode({"a": [1, 2]})) == {"a": [1, 2]}


def test_lock_live_owner_refused_dead_owner_taken_over(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from evomerge.runs.lock import RunLock; l=RunLock(sys.argv[1]).acquire(); print('ok', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(RunDirError, match=rf"run directory {tmp_path} is locked by pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup, the lock file still names it
        holder.wait()
    lock = RunLock(tmp_path).acquire()
    assert lock.took_over_from.startswith(f"pid {holder.pid} ")
    assert (tmp_path / "lock").read_text().split()[0] == str(os.getpid())
    lock.release()


def test_summary_counts_best_and_pareto(tmp_path):
    store = RunStore(tmp_path)
    store.create("x: 1\n")
    for r in [
        _rec(0, 0.5, [0.5, 0.1]),
        _rec(1, 0.9, [0.2, 0.9]),
        _rec(2, 0.3, [0.1, 0.05]),
        _rec(3, None, status="failed") | {"values": None},
    ]:
        store.append(r)
    store.close()
    store.write_json(store.validation_path, {"id": 1, "objectives": {"a": 0.8}})
    s = summarize(store)
    assert (s["evaluations"], s["failed"], s["pareto_size"]) == (4, 1, 2)
    assert s["best"] == {"id": 1, "objectives": {"a": 0.9}, "score": 0.9, "validation": {"a": 0.8}}
    assert s["throughput_per_hour"] == pytest.approx(4 / 4.0 * 3600)


BASE = {"toyworld": {"preset": "test"}, "budget": {"max_evals": 3}}


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"space": {"layer_group": 2}}, "c.yaml: unknown key 'space.layer_group' (did you mean 'space.layer_groups'?)"),
        ({"bugdet": {}}, "c.yaml: unknown key 'bugdet' (did you mean 'budget'?)"),
        (
            {"driver": {"name": "cmaes", "opts": {}}},
            "c.yaml: unknown key 'driver.opts' (did you mean 'driver.options'?)",
        ),
        (
            {"evaluator": {"device": "gpu"}},
            "c.yaml: key 'evaluator.device': expected auto, cpu, cuda, cuda:N or mps, got 'gpu'",
        ),
        ({"budget": {}}, "c.yaml: budget needs max_evals or time_limit (or both)"),
        (
            {"models": {"base": "b", "experts": {"x": "y"}}},
            "c.yaml: give exactly one of 'models' (base + experts) or 'toyworld' (preset, seed)",
        ),
    ],
)
def test_config_errors_are_one_line(patch, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE | patch, "c.yaml")
    assert str(exc.value) == message


def test_durations():
    assert parse_duration("90m") == 5400 and parse_duration("1h30m") == 5400 and parse_duration("12") == 12
    assert parse_config(BASE | {"budget": {"time_limit": "2h"}}).budget.time_limit == 7200
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_damaged_run_files_and_bad_digits_seed_are_one_line_errors(tmp_path):
    from evomerge.errors import RunDirError
    from evomerge.runs.api import load_run_config
    from evomerge.runs.records import known_from_record, record_genome
    from evomerge.runs.store import RunStore

    store = RunStore(tmp_path)
    store.create("problem: digits\ndriver: {name: random\n")  # an editor left the flow mapping open
    with pytest.raises(RunDirError, match=rf"^{store.config_path}: not valid YAML \(line 3\): "):
        load_run_config(store)
    store.config_path.write_text("- a list\n")
    with pytest.raises(RunDirError, match=rf"^{store.config_path}: expected a mapping of config sections, got list$"):
        load_run_config(store)

    record = {
        "id": 4,
        "status": "ok",
        "genome": {"path": "genomes/4.npy"},
        "per_example": {"path": "per_example/4.json"},
    }
    with pytest.raises(RunDirError) as exc:
        record_genome(store, record)
    assert (
        str(exc.value) == f"{tmp_path}/genomes/4.npy: cannot read the genome of candidate 4 (No such file or directory)"
    )
    with pytest.raises(RunDirError) as exc:
        known_from_record(store, record)
    assert str(exc.value) == (
        f"{tmp_path}/per_example/4.json: cannot read the per-example scores of candidate 4 (No such file or directory)"
    )

    digits = {"problem": "digits", "driver": {"name": "random"}, "budget": {"max_evals": 2}}
    for seed, line in [
        ("three", "d.yaml: key 'digits.seed': Input should be a valid integer (got 'three')"),
        (True, "d.yaml: key 'digits.seed': Input should be a valid integer (got true)"),
    ]:
        with pytest.raises(ConfigError) as exc:
            parse_config({**digits, "digits": {"seed": seed}}, "d.yaml")
        assert str(exc.value) == line
    with pytest.raises(ConfigError) as exc:
        parse_config({**digits, "digits": {"sed": 1}}, "d.yaml")
    assert str(exc.value) == "d.yaml: unknown key 'digits.sed' (did you mean 'digits.seed'?)"


def test_run_dir_that_cannot_be_created_is_one_line(tmp_path):
    from evomerge.errors import EvomergeError, RunDirError
    from evomerge.runs.api import run

    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a directory")
    cfg = parse_config({"problem": "digits", "driver": {"name": "random"}, "budget": {"max_evals": 2}}, "d.yaml")
    with pytest.raises(RunDirError, match=rf"^{blocker} is a file, not a run directory; pick another --run-dir$"):
        run(cfg, blocker, progress=False)
    with pytest.raises(EvomergeError) as exc:
        run(cfg, blocker / "sub", progress=False)
    assert str(exc.value) == f"{blocker / 'sub'}: Not a directory (while creating the run directory)"
    assert blocker.read_text() == "a file, not a directory"
