"""A run directory written by evomerge v1 (checkpoints as pickles): ``resume`` refuses its pickle in
one line and never unpickles it; once the pickle is moved away, the run resumes by replaying its
log and finishes as an uninterrupted run of today's code does.

``fixtures/main_run_dir.json`` is such a directory as text (see ``fixtures/make_main_run_dir.py``):
the random driver on three in-process slots over the tiny Llama family, killed after its fifth
log line, so its newest checkpoint holds two in-flight candidates, one of them logged. The
checkpoint is written back here the way v1 wrote it: ``EVMCKPT1 | sha256 | pickle``.
"""

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from evomerge.cli import main
from evomerge.config import load_config
from evomerge.runs.api import resume, run
from evomerge.runs.checkpoint import CheckpointDir
from evomerge.runs.records import RECORD_FIELDS
from evomerge.runs.store import RunStore, comparable

FIXTURE = Path(__file__).parent / "fixtures" / "main_run_dir.json"


def decode(obj):
    """The inverse of ``make_main_run_dir.encode``."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__items__" in obj:
        return {decode(k): decode(v) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(decode(v) for v in obj["__tuple__"])
    if "__ndarray__" in obj:
        return np.array(obj["__ndarray__"], dtype=obj["dtype"])
    if "__torch_uint8_hex__" in obj:
        return torch.frombuffer(bytearray.fromhex(obj["__torch_uint8_hex__"]), dtype=torch.uint8).clone()
    return {k: decode(v) for k, v in obj.items()}


def v1_checkpoint(payload: bytes) -> bytes:
    return b"EVMCKPT1" + hashlib.sha256(payload).digest() + payload


class Marker:
    """Unpickling this creates a file: the proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def without_filters(obj, names):
    """``obj`` with every ``{filter: NAME, value: …}`` entry whose NAME is in ``names`` removed."""
    if isinstance(obj, list):
        return [without_filters(v, names) for v in obj if not (isinstance(v, dict) and v.get("filter") in names)]
    if isinstance(obj, dict):
        return {k: without_filters(v, names) for k, v in obj.items()}
    return obj


@pytest.fixture(scope="module")
def old_dir(tiny_llama_family, tmp_path_factory):
    data = json.loads(FIXTURE.read_text())
    root = tmp_path_factory.mktemp("old")
    cfg_dir = root / "cfg"
    cfg_dir.mkdir()
    for name, text in data["tasks"].items():
        (cfg_dir / name).write_text(text)
    family = str(Path(tiny_llama_family["base"]).parent)

    def here(text):
        return text.replace("{FAMILY}", family).replace("{CONFIG_DIR}", str(cfg_dir))

    old = root / "old"
    for rel, text in data["files"].items():
        (old / rel).parent.mkdir(parents=True, exist_ok=True)
        (old / rel).write_text(here(text))
    ckpt = data["checkpoint"]
    (old / "checkpoints").mkdir()
    state = decode(ckpt["state"])
    (old / "checkpoints" / ckpt["name"]).write_bytes(v1_checkpoint(pickle.dumps(state)))
    config = "\n".join(
        line for line in here(data["files"]["config.yaml"]).splitlines() if not line.startswith("_base_dir")
    )
    (cfg_dir / "run.yaml").write_text(config + "\n")
    return {"root": root, "dir": old, "state": state, "pkl": old / "checkpoints" / ckpt["name"], "cfg": cfg_dir}


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_fixture_is_main_s_format_mid_run(old_dir):
    state = old_dir["state"]
    assert set(state) == {"version", "driver", "archive", "rng", "n_told", "in_flight", "n_logged", "elapsed"}
    assert state["n_told"] == 4 and len((old_dir["dir"] / "evaluations.jsonl").read_text().splitlines()) == 5
    assert [f["id"] for f in state["in_flight"]] == [4, 5] and all(f["submitted"] for f in state["in_flight"])


def test_a_v1_pickle_is_refused_in_one_line_and_never_loaded(old_dir, tmp_path, capsys):
    run_dir = tmp_path / "old"
    shutil.copytree(old_dir["dir"], run_dir)
    pkl = run_dir / "checkpoints" / old_dir["pkl"].name
    marker = tmp_path / "unpickled"
    # a crafted pickle where resume would read a checkpoint: loading it would create the marker
    pkl.write_bytes(v1_checkpoint(pickle.dumps({"driver": Marker(marker)})))
    before = _snapshot(run_dir)
    assert main(["resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {pkl}: a pickle checkpoint written by evomerge v1, which is never loaded (unpickling a file can "
        f"run code); move {run_dir}/checkpoints/ckpt-*.pkl out of the run directory and resume again: the search "
        "is then rebuilt by replaying evaluations.jsonl (nothing is evaluated twice)"
    )
    assert not marker.exists()
    assert _snapshot(run_dir) == before


@pytest.fixture(scope="module")
def resumed_and_reference(old_dir):
    root = old_dir["root"]
    run_dir = root / "moved"
    shutil.copytree(old_dir["dir"], run_dir)
    (run_dir / "checkpoints" / old_dir["pkl"].name).rename(root / old_dir["pkl"].name)  # what the error says
    old_lines = (run_dir / "evaluations.jsonl").read_text().splitlines()
    warnings = []
    resume(run_dir, progress=False, warn=warnings.append)
    cfg = old_dir["cfg"] / "run.yaml"
    run(load_config(cfg), root / "reference", config_path=cfg, progress=False)
    return {
        "old_lines": old_lines,
        "warnings": warnings,
        "resumed": RunStore(run_dir),
        "reference": RunStore(root / "reference"),
    }


def test_an_old_run_directory_replays_its_log_and_finishes_as_an_uninterrupted_run(resumed_and_reference):
    old_lines = resumed_and_reference["old_lines"]
    resumed = resumed_and_reference["resumed"].read_log()
    reference = resumed_and_reference["reference"].read_log()
    meta = resumed_and_reference["resumed"].root / "meta.json"
    assert resumed_and_reference["warnings"] == [
        f"warning: {meta}: this run's candidates so far were merged by merge engine 1, the ones from now on by "
        "engine 2 (DARE/DELLA masks, the L1 rescale and bf16 rounding differ: evomerge.merge.ENGINE); logged "
        "scores are kept as they are",
        f"warning: {meta} records no fingerprint (an older evomerge wrote it); changes to the config or models "
        "before this resume cannot be detected",
    ]
    written = json.loads(meta.read_text())
    assert "fingerprint" in written  # adopted: the next resume compares against it
    assert (written["merge_engine"], written["merge_engine_history"]) == (2, [1])  # and warns no more
    # the logged lines are kept as written; nothing is evaluated twice, nothing lost
    assert resumed_and_reference["resumed"].log_path.read_text().splitlines()[:5] == old_lines
    assert [r["id"] for r in resumed] == list(range(8)) == [r["id"] for r in reference]
    # the same search: the same candidates, asked in the same order, merged by the same recipes
    for k, (mine, ref) in enumerate(zip(resumed, reference)):
        # main's recipes also listed GPT-2's layer-less names; today's carry only the filters that
        # match a tensor of the models (issue 10 §4): the logged ones agree once those are dropped
        recipe = mine["recipe"] if k >= 5 else without_filters(mine["recipe"], {"wte", "wpe", "ln_f"})
        assert (mine["genome"], recipe, mine["asked"]) == (ref["genome"], ref["recipe"], ref["asked"])
        assert set(mine) == set(ref) == set(RECORD_FIELDS)
    # what today's code evaluated after the resume is exactly what it evaluates uninterrupted
    assert [comparable(r) for r in resumed[5:]] == [comparable(r) for r in reference[5:]]
    # and main's logged scores are today's (the fixture's models are the test family)
    for mine, ref in zip(resumed[:5], reference[:5]):
        assert mine["objectives"] == pytest.approx(ref["objectives"], rel=1e-6)


def test_checkpoints_written_now_hold_only_what_a_resume_reads(resumed_and_reference):
    store = resumed_and_reference["resumed"]
    assert [p.suffix for p in (store.root / "checkpoints").iterdir()] == [".ckpt"] * 2
    n, state = CheckpointDir(store.root / "checkpoints").load_latest(log=lambda m: None)
    assert n == 8 and state["n_told"] == 8 and state["in_flight"] == []
    assert set(state) == {"driver", "rng", "n_told", "in_flight", "elapsed", "fingerprint"}


def test_a_run_records_the_merge_engine_that_merged_it(resumed_and_reference):
    from evomerge.merge import ENGINE

    meta = json.loads((resumed_and_reference["reference"].root / "meta.json").read_text())
    assert meta["merge_engine"] == ENGINE == 2 and "merge_engine_history" not in meta
