"""Every whole-directory writer leaves the marker and replaces only its own earlier output, whole:
the report, the toy world, ``export --format hf`` of a data-flow recipe (the fold)."""

from __future__ import annotations

import json

import pytest
from battery import snapshot

from evomerge.cli import main
from evomerge.errors import EvomergeError
from evomerge.io.outputs import read_marker


def _siblings(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_report_is_replaced_whole_and_only_when_it_is_a_report(tmp_path, finished_run, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["report", str(run)]) == 0
    report = run / "report"
    assert read_marker(report)["kind"] == "report"
    (report / "stale.png").write_bytes(b"from an earlier report")
    assert main(["report", str(run)]) == 0
    assert not (report / "stale.png").exists() and (report / "index.html").is_file()
    assert _siblings(run, "report") == []  # no temporary, no old copy left
    # a report an older evomerge wrote (no marker) is still its own output
    (report / ".evomerge-output.json").unlink()
    assert main(["report", str(run)]) == 0
    assert read_marker(report)["kind"] == "report"
    # the rest of the run directory is untouched by drawing a report
    before = {k: v for k, v in snapshot(run).items() if not k.startswith("report")}
    assert main(["report", str(run)]) == 0
    assert {k: v for k, v in snapshot(run).items() if not k.startswith("report")} == before


def test_toy_world_leaves_its_marker_and_never_rebuilds_over_a_run(tmp_path, finished_run):
    import shutil

    from evomerge.toyworld.cache import MANIFEST, build_atomically

    def build(tmp):
        (tmp / "base").mkdir()
        (tmp / MANIFEST).write_text(json.dumps({"key": "k", "base": "base", "experts": {}}))

    root = tmp_path / "world"
    assert build_atomically(root, "k", build, force=True)
    assert read_marker(root)["kind"] == "toyworld"
    assert build_atomically(root, "k", build, force=True)  # a forced rebuild over its own world
    # a world folder that now holds a run (a user's mistake) is never rebuilt over
    shutil.copytree(finished_run, root / "run")
    before = snapshot(root)
    with pytest.raises(EvomergeError) as exc:
        build_atomically(root, "k", build, force=True)
    assert str(exc.value) == (
        f"{root}: holds the run directory {root / 'run'}; --force never replaces a run directory, anything in one, "
        "or a folder that holds one"
    )
    assert snapshot(root) == before


def test_dataflow_export_writes_a_marked_checkpoint_and_replaces_only_it(tmp_path, finished_run, tiny_llama_family):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    log = run / "evaluations.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for r in records:
        r["recipe"] = {
            "merge_method": "dataflow",
            "sources": {"A": str(tiny_llama_family["base"]), "B": str(tiny_llama_family["experts"][0])},
            "embed_from": "A",
            "path": [{"model": "A", "layer": 0}, {"model": "B", "layer": 1}, {"model": "A", "layer": 1}],
        }
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "folded"
    assert main(["export", str(run), "--format", "hf", "-o", str(out)]) == 0
    marker = read_marker(out)
    assert (marker["kind"], marker["writer"]) == ("hf-checkpoint", "evomerge merge (data-flow fold)")
    (out / "stale.txt").write_text("x")
    assert main(["export", str(run), "--format", "hf", "-o", str(out), "--force"]) == 0
    assert not (out / "stale.txt").exists() and (out / "dataflow_recipe.yaml").is_file()
    assert _siblings(tmp_path, "folded") == []
