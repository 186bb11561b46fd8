"""A run directory written before the run/scheduler redesign still resumes, and finishes as an
uninterrupted run of today's code does.

``fixtures/main_run_dir.json`` is such a directory as text (see ``fixtures/make_main_run_dir.py``):
the random driver on three in-process slots over the tiny Llama family, killed after its fifth
log line, so its newest checkpoint (main's format: with the ``version``, ``archive`` and
``n_logged`` fields no reader used) holds two in-flight candidates, one of them logged.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evomerge.config import load_config
from evomerge.runs.api import resume, run
from evomerge.runs.checkpoint import CheckpointDir, encode
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


def without_filters(obj, names):
    """``obj`` with every ``{filter: NAME, value: …}`` entry whose NAME is in ``names`` removed."""
    if isinstance(obj, list):
        return [without_filters(v, names) for v in obj if not (isinstance(v, dict) and v.get("filter") in names)]
    if isinstance(obj, dict):
        return {k: without_filters(v, names) for k, v in obj.items()}
    return obj


@pytest.fixture(scope="module")
def resumed_and_reference(tiny_llama_family, tmp_path_factory):
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
    (old / "checkpoints" / ckpt["name"]).write_bytes(encode(decode(ckpt["state"])))
    old_lines = (old / "evaluations.jsonl").read_text().splitlines()

    warnings = []
    resume(old, progress=False, warn=warnings.append)

    # today's code, uninterrupted, on the same config
    config = "\n".join(
        line for line in here(data["files"]["config.yaml"]).splitlines() if not line.startswith("_base_dir")
    )
    (cfg_dir / "run.yaml").write_text(config + "\n")
    run(load_config(cfg_dir / "run.yaml"), root / "reference", config_path=cfg_dir / "run.yaml", progress=False)
    return {
        "state": decode(ckpt["state"]),
        "old_lines": old_lines,
        "warnings": warnings,
        "resumed": RunStore(old),
        "reference": RunStore(root / "reference"),
    }


def test_the_fixture_is_main_s_format_mid_run(resumed_and_reference):
    state = resumed_and_reference["state"]
    assert set(state) == {"version", "driver", "archive", "rng", "n_told", "in_flight", "n_logged", "elapsed"}
    assert state["n_told"] == 4 and len(resumed_and_reference["old_lines"]) == 5
    assert [f["id"] for f in state["in_flight"]] == [4, 5] and all(f["submitted"] for f in state["in_flight"])


def test_an_old_run_directory_resumes_and_finishes_as_an_uninterrupted_run(resumed_and_reference):
    old_lines = resumed_and_reference["old_lines"]
    resumed = resumed_and_reference["resumed"].read_log()
    reference = resumed_and_reference["reference"].read_log()
    assert resumed_and_reference["warnings"] == []
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
    n, state = CheckpointDir(store.root / "checkpoints").load_latest(log=lambda m: None)
    assert n == 8 and state["n_told"] == 8 and state["in_flight"] == []
    assert set(state) == {"driver", "rng", "n_told", "in_flight", "elapsed"}
