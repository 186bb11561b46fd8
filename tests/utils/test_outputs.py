"""evomerge.io.outputs and evomerge.io.oserrors: what --force may replace, and OS errors as one line."""

from __future__ import annotations

import errno
import json
import os

import pytest

from evomerge.errors import EvomergeError
from evomerge.io import OSFailure, atomic_dir, atomic_write_bytes, writing
from evomerge.io.outputs import (
    MARKER,
    OutputRefused,
    check_replaceable,
    is_legacy_checkpoint,
    is_recipe_yaml,
    is_run_dir,
    output_dir,
    read_marker,
)


def _run_dir(path):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("x: 1\n")
    (path / "evaluations.jsonl").write_text("")
    return path


def _ours(path, kind="hf-checkpoint"):
    with output_dir(path, kind=kind, writer="test", what="a test output") as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
    return path


def test_output_dir_leaves_the_marker_and_replaces_only_its_own_kind(tmp_path):
    out = _ours(tmp_path / "out")
    marker = read_marker(out)
    assert (marker["format"], marker["kind"], marker["writer"]) == (1, "hf-checkpoint", "test")
    check_replaceable(out, kind="hf-checkpoint", force=True)  # our own output: fine
    with pytest.raises(OutputRefused) as exc:
        check_replaceable(out, kind="report", force=True)
    assert str(exc.value) == (
        f"{out}: holds an evomerge hf-checkpoint, not a report; --force replaces only an output of the same kind"
    )
    with pytest.raises(OutputRefused) as exc:
        check_replaceable(out, kind="hf-checkpoint", force=False)
    assert str(exc.value) == f"{out}: output directory is not empty; pass --force to replace it"


def test_new_and_empty_outputs_need_no_force(tmp_path):
    check_replaceable(tmp_path / "new" / "deeper", kind="hf-checkpoint", force=False)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", kind="hf-checkpoint", force=False)


@pytest.mark.parametrize(
    "layout, is_run",
    [
        ({"evaluations.jsonl": ""}, True),
        ({"config.yaml": "", "lock": ""}, True),
        ({"config.yaml": "", "meta.json": "{}"}, True),
        ({"config.yaml": "", "checkpoints/": None}, True),
        ({"config.yaml": ""}, False),  # a folder of configs is not a run
        ({"config.json": "{}", "model.safetensors": ""}, False),
    ],
)
def test_is_run_dir(tmp_path, layout, is_run):
    d = tmp_path / "d"
    d.mkdir()
    for name, text in layout.items():
        if name.endswith("/"):
            (d / name).mkdir()
        else:
            (d / name).write_text(text)
    assert is_run_dir(d) is is_run
    link = tmp_path / "link"
    link.symlink_to(d)
    assert is_run_dir(link) is False  # a link is not followed (check_replaceable resolves it itself)


def test_run_dirs_inside_around_and_below(tmp_path):
    run = _run_dir(tmp_path / "runs" / "r1")
    tail = "; --force never replaces a run directory, anything in one, or a folder that holds one"
    cases = {
        run: f"{run}: is the run directory{tail}",
        run / "evaluations.jsonl": f"{run / 'evaluations.jsonl'}: is inside the run directory {run}{tail}",
        tmp_path / "runs": f"{tmp_path / 'runs'}: holds the run directory {run}{tail}",
    }
    for path, message in cases.items():
        kind = "file" if path.is_file() else "hf-checkpoint"
        with pytest.raises(OutputRefused) as exc:
            check_replaceable(path, kind=kind, force=True, recognise=lambda p: True)
        assert str(exc.value) == message
    # deeper below an output of ours: found by the full walk
    out = _ours(tmp_path / "out")
    deep = _run_dir(out / "a" / "b" / "run")
    with pytest.raises(OutputRefused) as exc:
        check_replaceable(out, kind="hf-checkpoint", force=True)
    assert str(exc.value) == f"{out}: holds the run directory {deep}{tail}"
    # the run's own derived output is its writer's to replace
    (run / "report").mkdir()
    (run / "report" / "index.html").write_text("old")
    check_replaceable(run / "report", kind="report", force=True, own_run=run, recognise=lambda p: True)


def test_source_models_and_their_ancestors(tmp_path):
    model = tmp_path / "zoo" / "m1"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    tail = "; --force never replaces a source model or a folder that holds one"
    for path, where in ((model, "is the source model"), (tmp_path / "zoo", f"holds the source model {model}")):
        with pytest.raises(OutputRefused) as exc:
            check_replaceable(path, kind="hf-checkpoint", force=True, protected=[str(model), "org/hub-id"])
        assert str(exc.value) == f"{path}: {where}{tail}"
    link = tmp_path / "alias"
    link.symlink_to(model)
    with pytest.raises(OutputRefused, match="is the source model"):
        check_replaceable(link, kind="hf-checkpoint", force=True, protected=[model])


def test_special_directories(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "me" / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home / "me"))
    monkeypatch.chdir(home / "me" / "work")
    never = "; evomerge never writes over it: choose a new or empty folder"
    cases = {
        "/": "/: is the root directory",
        ".": ".: is the current directory",
        str(home / "me"): f"{home / 'me'}: is your home directory",
        str(home): f"{home}: holds your home directory ({home / 'me'})",
    }
    for path, message in cases.items():
        for force in (False, True):
            with pytest.raises(OutputRefused) as exc:
                check_replaceable(path, kind="hf-checkpoint", force=force)
            assert str(exc.value) == message + never


def test_a_forged_marker_is_not_a_marker(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep.txt").write_text("x")
    elsewhere = tmp_path / "m.json"
    elsewhere.write_text(json.dumps({"kind": "hf-checkpoint"}))
    (d / MARKER).symlink_to(elsewhere)
    assert read_marker(d) is None
    (d / MARKER).unlink()
    (d / MARKER).write_text("not json")
    assert read_marker(d) is None
    (d / MARKER).write_text(json.dumps({"kind": 3}))
    assert read_marker(d) is None


def test_recognisers(tmp_path):
    cases = {
        "ours.yaml": ("merge_method: ties\nmodels: []\n", True),
        "mk.yaml": ("slices: []\nmerge_method: passthrough\n", True),
        "df.yaml": ("sources: {A: a}\npath: []\n", True),
        "cfg.yaml": ("models: {base: x}\nbudget: {max_evals: 3}\n", False),
        "list.yaml": ("- merge_method\n", False),
        "bad.yaml": ("merge_method: [\n", False),
        "config.json": ('{"model_type": "llama"}', False),
    }
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        assert is_recipe_yaml(tmp_path / name) is want, name
    big = tmp_path / "big.yaml"
    big.write_bytes(b"merge_method: ties\n" + b"#" * (5 * 1024 * 1024))
    assert is_recipe_yaml(big) is False  # never read: too large to be a recipe
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "README.md").write_text("---\nlibrary_name: transformers\ntags:\n- merge\n- evomerge\n---\n# x\n")
    assert is_legacy_checkpoint(ckpt)
    (ckpt / "README.md").write_text("# a model card that mentions evomerge in prose\n")
    assert not is_legacy_checkpoint(ckpt)


def test_file_outputs(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("merge_method: ties\n")
    check_replaceable(recipe, kind="file", force=True, recognise=is_recipe_yaml)
    notes = tmp_path / "notes.yaml"
    notes.write_text("- shopping\n")
    with pytest.raises(OutputRefused, match="not a file evomerge writes in this format"):
        check_replaceable(notes, kind="file", force=True, recognise=is_recipe_yaml)
    with pytest.raises(OutputRefused) as exc:
        check_replaceable(recipe, kind="file", force=False, recognise=is_recipe_yaml)
    assert str(exc.value) == f"{recipe}: output file exists; pass --force to replace it"


# -- OS errors -------------------------------------------------------------------------------
def test_os_failure_is_both_kinds_and_names_the_output(tmp_path):
    with pytest.raises(OSFailure) as exc:
        with writing("the recipe YAML", tmp_path / "out.yaml"):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".out.yaml.tmp-1"))
    err = exc.value
    assert isinstance(err, EvomergeError) and isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(err) == f"{tmp_path / 'out.yaml'}: No space left on device (while writing the recipe YAML)"
    assert err.exit_code == 2


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "pareto.json"
    path.write_text("old")
    real_write = os.write
    calls = []

    def full(fd, data):
        calls.append(len(data))
        if len(calls) > 1:  # the first chunk lands, the second finds the disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data[: len(data) // 2])  # a short write: the writer must loop

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSFailure) as exc:
        atomic_write_bytes(path, b"new contents", what="the Pareto front")
    assert str(exc.value) == f"{path}: No space left on device (while writing the Pareto front)"
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["pareto.json"]


def test_atomic_dir_never_takes_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for bad in (".", "..", "/"):
        with pytest.raises(ValueError, match="cannot be replaced as a whole"):
            with atomic_dir(bad):
                pass
    assert list(tmp_path.iterdir()) == []  # no stray ..old-* or .tmp-* folder
