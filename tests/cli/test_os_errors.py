"""A full disk in the middle of a run: one line and exit 2 when the log or a checkpoint cannot be
written — and the run directory stays recoverable (``resume`` then finishes with the log of an
uninterrupted run, record for record); a derived file (best/, pareto.json, progress.json) that
cannot be written warns once and the run goes on, as does the cache of held-out scores
(validation.json).

The disk fills in-process: ``os.write`` (every byte evomerge writes goes through it) fails with
``ENOSPC`` for the files a test names. The model-free digits problem keeps each run to seconds.
"""

from __future__ import annotations

import errno
import os
import re
import shutil

import pytest
import yaml
from battery import snapshot

from evomerge.cli import main
from evomerge.runs.store import RunStore, comparable

MAX_EVALS = 8


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "digits.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "problem": "digits",
                "driver": {"name": "cmaes", "options": {"population_size": 4}},
                "budget": {"max_evals": MAX_EVALS},
                "run": {"seed": 3},
            }
        )
    )
    return path


def _log(run_dir):
    return [comparable(r) for r in RunStore(run_dir).read_log()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cfg):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 0
    log = _log(run_dir)
    assert len(log) == MAX_EVALS
    return log


def fill_disk(monkeypatch, fails):
    """``os.write`` raises ENOSPC when ``fails(path, n)`` is true (``n``: writes to ``path`` so far)."""
    real = os.write
    counts: dict[str, int] = {}

    def write(fd, data):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        counts[path] = counts.get(path, 0) + 1
        if path and fails(path, counts[path]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def _stderr(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error:", "warning:"))]


def test_full_disk_on_the_log_is_one_line_and_resume_recovers(tmp_path, cfg, reference, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    log = run_dir / "evaluations.jsonl"
    # the 5th record: its first half lands, the second finds the disk full (a torn line)
    fill_disk(monkeypatch, lambda path, n: path == str(log) and n == 10)
    capsys.readouterr()
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 2
    cid = reference[4]["id"]
    assert _stderr(capsys) == [
        f"error: {log}: No space left on device (while writing candidate {cid} to the evaluation log; "
        f"`evomerge resume {run_dir}` continues from the last whole line)"
    ]
    data = log.read_bytes()
    assert data.count(b"\n") == 4 and not data.endswith(b"\n")  # four whole lines and half of the fifth
    monkeypatch.undo()  # the disk has room again
    assert main(["resume", str(run_dir)]) == 0
    assert _stderr(capsys) == [f"warning: {log} ends in a partly written line (line 5); dropped it"]
    assert _log(run_dir) == reference


def test_full_disk_on_a_checkpoint_is_one_line_and_resume_recovers(tmp_path, cfg, reference, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    ckpts = str(run_dir / "checkpoints") + os.sep
    seen: list[str] = []

    def fails(path, n):
        if path.startswith(ckpts):
            seen.append(path)
            return len(set(seen)) == 2  # the second checkpoint cannot be written
        return False

    fill_disk(monkeypatch, fails)
    capsys.readouterr()
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 2
    lines = _stderr(capsys)
    assert len(lines) == 1 and re.fullmatch(
        rf"error: {re.escape(ckpts)}[^/ ]+: No space left on device \(while writing [^)]+\)", lines[0]
    ), lines
    assert not [p for p in os.listdir(ckpts) if ".tmp-" in p]  # the failed write left no temporary
    monkeypatch.undo()
    assert main(["resume", str(run_dir)]) == 0
    assert _log(run_dir) == reference


def test_derived_files_that_cannot_be_written_warn_once_and_the_run_goes_on(
    tmp_path, cfg, reference, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    derived = (".pareto.json.tmp-", ".progress.json.tmp-", ".recipe.yaml.tmp-", ".validation.json.tmp-")

    def fails(path, n):
        return os.path.dirname(path) in (str(run_dir), str(run_dir / "best")) and os.path.basename(path).startswith(
            derived
        )

    fill_disk(monkeypatch, fails)
    capsys.readouterr()
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 0
    tail = "No space left on device (while writing {}); the run goes on without it (rewritten at the next change)"
    warnings = _stderr(capsys)
    assert sorted(warnings) == sorted(
        [
            f"warning: {run_dir / 'progress.json'}: " + tail.format("progress"),
            f"warning: {run_dir / 'best' / 'recipe.yaml'}: " + tail.format("the best recipe"),
            f"warning: {run_dir / 'pareto.json'}: " + tail.format("the Pareto front"),
            f"warning: {run_dir / 'validation.json'}: No space left on device (while writing the held-out scores); "
            "not cached (computed again when asked)",
        ]
    )
    assert _log(run_dir) == reference  # the search itself did not notice
    assert not (run_dir / "pareto.json").exists()
    monkeypatch.undo()
    assert main(["resume", str(run_dir)]) == 0  # rebuilds them from the log
    for name in ("pareto.json", "best/recipe.yaml", "validation.json"):
        assert (run_dir / name).is_file(), name
    assert _log(run_dir) == reference


def test_a_tampered_best_link_is_never_written_through(tmp_path, cfg, reference, capsys):
    """``best/`` replaced by a link to a folder of the user's: resume warns and writes nothing there."""
    run_dir = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "recipe.yaml").write_text("the user's own file")
    shutil.rmtree(run_dir / "best")
    (run_dir / "best").symlink_to(mine)
    before = snapshot(mine)
    capsys.readouterr()
    assert main(["resume", str(run_dir)]) == 0
    assert _stderr(capsys) == [
        f"warning: {run_dir / 'best'}: is a link or a file, not a folder of the run directory; evomerge does not "
        "write there; the run goes on without it (rewritten at the next change)"
    ]
    assert snapshot(mine) == before


def test_a_tampered_lock_link_is_never_truncated(tmp_path, cfg, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 0
    precious = tmp_path / "bashrc"
    precious.write_text("export PATH=...\n")
    (run_dir / "lock").unlink()
    (run_dir / "lock").symlink_to(precious)
    capsys.readouterr()
    assert main(["resume", str(run_dir)]) == 2
    assert _stderr(capsys) == [f"error: {run_dir / 'lock'}: is a symbolic link; the run's lock must be a regular file"]
    assert precious.read_text() == "export PATH=...\n"
