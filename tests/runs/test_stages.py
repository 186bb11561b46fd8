"""Sequential PS+DFS (evomerge/runs/stages.py) on the tiny test world: a PS stage, then a DFS stage
over its winner, in one run directory and one log.

- the log holds the stages one after another, ids continuing, each record naming its stage; the
  PS stage is a plain PS search (record for record);
- the DFS stage starts at model A's identity path, which scores exactly what the PS winner scored,
  example by example;
- killed anywhere — within PS, at the boundary, within DFS — and resumed, the log equals an
  uninterrupted run's;
- model A may come from a finished PS run (``space.model_a``);
- export gives each stage's recipe and the folded HF checkpoint; the report draws both stages.

The fitness is the world's target task scored by NLL, so that per-example scores are real numbers.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evomerge.config import load_config, parse_config
from evomerge.errors import ConfigError, RunDirError
from evomerge.merge.recipes.parameter import Recipe
from evomerge.runs.api import resume, run
from evomerge.runs.store import RunStore, comparable
from evomerge.runs.summary import best_record

N_PS, N_DFS = 8, 6


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from evomerge.toyworld import build_toyworld

    return build_toyworld(dir=tmp_path_factory.mktemp("seqworld") / "world", preset="test", log=None)


def _fitness(world):
    task = dict(world.task("target"), scorer={"type": "nll"}, splits={"calibration": 24, "validation": 16, "seed": 0})
    return {"tasks": [task], "objectives": [{"task": "target"}]}


DFS_OPTIONS = {"repeats": 2, "embed_from": "math", "scale_mode": "per_layer"}
PS_OPTIONS = {"method": "task_arithmetic", "layer_groups": 2, "params": ["weight"], "ranges": {"weight": [0.0, 1.5]}}


def _config(root: Path, world, name: str, space: dict, budget: dict) -> Path:
    cfg = {
        "toyworld": {"preset": "test", "seed": 0, "dir": str(world.root)},
        "fitness": _fitness(world),
        "space": space,
        "driver": {"name": "cmaes", "options": {"population_size": 4}},
        "budget": budget,
        "run": {"seed": 0},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sequential(root, world):
    space = {"kind": "psdfs", "mode": "sequential", **PS_OPTIONS, **DFS_OPTIONS}
    return _config(root, world, "seq", space, {"stages": {"ps": N_PS, "dfs": N_DFS}})


def _log(run_dir):
    return [comparable(r) for r in RunStore(run_dir).read_log()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, world):
    """An uninterrupted sequential run: (config path, run dir, records)."""
    root = tmp_path_factory.mktemp("seq")
    cfg_path = _sequential(root, world)
    run(load_config(cfg_path), root / "run", config_path=cfg_path, progress=False)
    return cfg_path, root / "run", RunStore(root / "run").read_log()


@pytest.fixture(scope="module")
def ps_run(tmp_path_factory, world):
    """A plain PS run with the PS stage's settings and budget: (run dir, records)."""
    root = tmp_path_factory.mktemp("ps")
    cfg_path = _config(root, world, "ps", {"kind": "parameter", **PS_OPTIONS}, {"max_evals": N_PS})
    run(load_config(cfg_path), root / "run", config_path=cfg_path, progress=False)
    return root / "run", RunStore(root / "run").read_log()


def _stage(r):
    return r["meta"]["stage"]


def test_stages_follow_one_another_in_one_log(reference, world):
    _, run_dir, records = reference
    assert [r["id"] for r in records] == list(range(N_PS + N_DFS))
    assert [_stage(r) for r in records] == ["ps"] * N_PS + ["dfs"] * N_DFS
    ps, dfs = records[:N_PS], records[N_PS:]
    winner = best_record(ps)
    assert {r["recipe"]["merge_method"] for r in ps} == {"task_arithmetic"}
    for r in dfs:  # every DFS recipe nests the PS winner as model A, beside the other expert
        assert r["recipe"]["merge_method"] == "dataflow" and r["recipe"]["embed_from"] == "merged"
        assert r["recipe"]["sources"] == {"merged": winner["recipe"], "lang": str(world.experts["lang"])}
    meta = json.loads((run_dir / "meta.json").read_text())
    stages = meta["stages"]
    assert [(s["name"], s["label"], s["kind"], s["max_evals"], s["num_layers"]) for s in stages] == [
        ("ps", "PS", "parameter", N_PS, 2),
        ("dfs", "DFS", "dataflow", N_DFS, 2),
    ]
    assert stages[0]["space"]["kind"] == "parameter" and stages[1]["space"]["sources"] == {"merged": 2, "lang": 2}
    assert stages[1]["model_a"] == {"stage": "ps", "id": winner["id"], "recipe": winner["recipe"]}
    from evomerge.runs.checkpoint import CheckpointDir

    n, state = CheckpointDir(run_dir / "checkpoints").load_latest()
    # CMA-ES λ = 4: the identity (told alone), one whole generation, and 1 of the next (never told)
    assert n == state["n_told"] == N_PS + 1 + 4
    assert state["stage"] == {
        "name": "dfs",
        "index": 1,
        "log_start": N_PS,
        "id_offset": N_PS,
        "identity": "told",
        "model_a": {"id": winner["id"], "recipe": winner["recipe"]},
    }
    progress = json.loads((run_dir / "progress.json").read_text())
    assert (progress["state"], progress["max_evals"], progress["stage"], progress["stage_max_evals"]) == (
        "finished",
        N_PS + N_DFS,
        "dfs",
        N_DFS,
    )
    best = best_record(records)
    assert json.loads((run_dir / "validation.json").read_text())["id"] == best["id"]


def test_dfs_stage_starts_at_model_a_with_the_ps_winner_s_scores(reference):
    """The paper's initialisation: the DFS stage's first candidate is model A's identity path (the
    space's x0), which scores exactly what the PS winner scored, example by example."""
    _, _, records = reference
    winner = best_record(records[:N_PS])
    first = records[N_PS]
    assert first["meta"] == {"stage": "dfs", "start": "identity"}
    assert [(s["model"], s["layer"], s["scale"]) for s in first["recipe"]["path"]] == [
        ("merged", 0, 1.0),
        ("merged", 1, 1.0),
    ]
    assert first["per_example"] == winner["per_example"]  # bit for bit
    assert first["objectives"] == winner["objectives"] and first["score"] == winner["score"]
    assert len(set(first["per_example"]["target"])) > 1  # real numbers, not a row of zeros
    # the driver's own candidates come next, sampled around that start
    assert all(r["meta"]["generation"] >= 0 for r in records[N_PS + 1 :])


def test_the_ps_stage_is_a_plain_ps_search(reference, ps_run):
    _, _, records = reference
    _, plain = ps_run

    def without_stage(r):
        r = comparable(r)
        r["meta"] = {k: v for k, v in r["meta"].items() if k != "stage"}
        return r

    assert [without_stage(r) for r in records[:N_PS]] == [comparable(r) for r in plain]


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "evomerge", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize(
    "crash, where",
    [
        ("after-append:6", "ps"),  # within PS, mid-generation
        ("stage-start:1", "boundary"),  # model A recorded in meta.json, the DFS stage's checkpoint not written
        ("checkpoint-rename:4", "dfs-checkpoint"),  # the DFS stage's first checkpoint written, nothing evaluated
        ("after-append:9", "dfs-identity"),  # model A's identity path logged, not yet told nor checkpointed
        ("after-append:11", "dfs"),  # within DFS, mid-generation
    ],
)
def test_kill_anywhere_then_resume_equals_uninterrupted(reference, tmp_path, crash, where):
    from evomerge.runs.checkpoint import CheckpointDir

    cfg_path, ref_dir, _ = reference
    run_dir = tmp_path / "run"
    proc = _cli("run", str(cfg_path), "--run-dir", str(run_dir), env={"EVOMERGE_CRASH_AT": crash})
    assert proc.returncode == 137, proc.stderr
    logged = RunStore(run_dir).read_log(warn=lambda m: None)
    n, state = CheckpointDir(run_dir / "checkpoints").load_latest()
    meta = json.loads((run_dir / "meta.json").read_text())
    if where == "ps":
        assert len(logged) == 6 and state["stage"]["name"] == "ps" and n == 4
    else:  # PS is finished; model A is recorded
        assert "model_a" in meta["stages"][1]
        stage, told, identity = {
            "boundary": ("ps", N_PS, None),
            "dfs-checkpoint": ("dfs", N_PS, "due"),
            "dfs-identity": ("dfs", N_PS, "due"),
            "dfs": ("dfs", N_PS + 1, "told"),
        }[where]
        assert (state["stage"]["name"], n, state["stage"].get("identity") if identity else None) == (
            stage,
            told,
            identity,
        )
        assert len(logged) == {"dfs": 11, "dfs-identity": N_PS + 1}.get(where, N_PS)
    resume(run_dir, progress=False)
    assert _log(run_dir) == _log(ref_dir)
    assert json.loads((run_dir / "meta.json").read_text()) == json.loads((ref_dir / "meta.json").read_text())


def test_resume_refuses_a_log_whose_model_a_changed(reference, tmp_path):
    _, ref_dir, records = reference
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    winner = meta["stages"][1]["model_a"]["id"]
    other = next(r["id"] for r in records[:N_PS] if r["id"] != winner)
    meta["stages"][1]["model_a"]["id"] = other
    (run_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError) as exc:
        resume(run_dir, progress=False)
    assert str(exc.value) == (
        f"{run_dir}: meta.json records candidate {other} as model A, but the ps stage's best in evaluations.jsonl is "
        f"candidate {winner}; the log was changed"
    )


def test_model_a_from_a_finished_ps_run(reference, ps_run, tmp_path, world):
    """``space.model_a``: the DFS stage alone over a finished PS run's best — the same search as
    the sequential run's DFS stage, ids from 0; the report and export read the PS run for stage ps."""
    _, _, ref_records = reference
    ps_dir, _ = ps_run
    space = {"kind": "psdfs", "mode": "sequential", "model_a": {"run_dir": str(ps_dir)}, **DFS_OPTIONS}
    cfg_path = _config(tmp_path, world, "dfs", space, {"max_evals": N_DFS})
    run(load_config(cfg_path), tmp_path / "run", config_path=cfg_path, progress=False)
    records = RunStore(tmp_path / "run").read_log()

    def shifted(r):
        return {**comparable(r), "id": r["id"] - N_PS}

    assert [comparable(r) for r in records] == [shifted(r) for r in ref_records[N_PS:]]
    stages = json.loads((tmp_path / "run" / "meta.json").read_text())["stages"]
    assert stages[0]["run_dir"] == str(ps_dir.resolve()) and "max_evals" not in stages[0]
    assert stages[1]["model_a"]["run_dir"] == str(ps_dir.resolve())
    from evomerge.export import export

    out = export(tmp_path / "run", stage="ps", out=tmp_path / "a.yaml")[0]
    assert Recipe.from_yaml(out) == Recipe.model_validate(best_record(RunStore(ps_dir).read_log())["recipe"])
    from evomerge.report import report

    html = report(tmp_path / "run").read_text()
    assert "Best recipe of stage PS" in html and "Best recipe of stage DFS" in html
    # model A must be a parameter-space merge: this run's best is a layer path
    bad = _config(tmp_path, world, "bad", {**space, "model_a": {"run_dir": str(tmp_path / "run")}}, {"max_evals": 2})
    with pytest.raises(ConfigError) as exc:
        run(load_config(bad), tmp_path / "run2", config_path=bad, progress=False)
    best = best_record(records)["id"]
    assert str(exc.value) == (
        f"{bad}: space.model_a.run_dir: candidate {best} of {tmp_path / 'run'} is not a parameter-space recipe "
        f"(model A of PS+DFS is a merge of the experts' weights)"
    )
    assert not (tmp_path / "run2").exists()


def test_export_gives_both_stages_and_the_folded_checkpoint(reference, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evomerge.export import export
    from evomerge.fitness import Fitness, parse_fitness_config
    from evomerge.merge.recipes.dataflow import DataFlowRecipe

    cfg_path, run_dir, records = reference
    ps_best, dfs_best = best_record(records[:N_PS]), best_record(records[N_PS:])
    ps_file = export(run_dir, stage="ps", out=tmp_path / "ps.yaml")[0]
    assert Recipe.from_yaml(ps_file) == Recipe.model_validate(ps_best["recipe"])
    dfs_file = export(run_dir, stage="dfs", out=tmp_path / "dfs.yaml")[0]
    recipe = DataFlowRecipe.from_yaml(dfs_file)
    assert recipe == DataFlowRecipe.model_validate(dfs_best["recipe"])
    assert recipe.nested_recipe("merged").to_dict() == recipe.parameter_recipe().to_dict()
    assert recipe.sources["merged"] == ps_best["recipe"]  # the PS recipe, nested
    hf = export(run_dir, stage="dfs", format="hf", out=tmp_path / "hf")[0]
    model = AutoModelForCausalLM.from_pretrained(hf).eval()
    assert model.config.num_hidden_layers == len(recipe.path)
    fit = Fitness(parse_fitness_config(load_config(cfg_path).fitness))
    res = fit.evaluate(model, AutoTokenizer.from_pretrained(hf), "calibration", early_stopping=False)
    assert {o.task: o.value for o in res.objectives} == pytest.approx(dfs_best["objectives"], rel=1e-5)
    with pytest.raises(ConfigError) as exc:
        export(run_dir, stage="pss", out=tmp_path / "x.yaml")
    assert str(exc.value) == f"--stage: {run_dir} has no stage 'pss' (its stages: ps, dfs)"


def test_report_draws_both_stages(reference, tmp_path):
    from evomerge.report import report

    _, run_dir, _ = reference
    index = report(run_dir, out_dir=tmp_path / "report")
    html = index.read_text()
    assert "Best recipe of stage PS" in html and "Best recipe of stage DFS" in html
    assert (tmp_path / "report" / "dfs_layer_path.png").is_file()
    assert (tmp_path / "report" / "ps_recipe_heatmap.png").is_file()


BASE = {"toyworld": {"preset": "test"}, "driver": {"name": "cmaes"}}
SEQ = {"kind": "psdfs", "mode": "sequential"}


@pytest.mark.parametrize(
    "sections, message",
    [
        (
            {"space": {"kind": "parameter"}, "budget": {"stages": {"ps": 3, "dfs": 2}}},
            "p.yaml: budget.stages splits the budget of space: {kind: psdfs, mode: sequential}; drop it",
        ),
        (
            {"space": SEQ, "budget": {"max_evals": 5}},
            "p.yaml: space.mode sequential runs a PS stage, then a DFS stage over its winner: give the budget of "
            "each as budget.stages: {ps: N, dfs: M}",
        ),
        (
            {"space": SEQ, "budget": {"max_evals": 6, "stages": {"ps": 3, "dfs": 2}}},
            "p.yaml: key 'budget': max_evals is 6 but stages add up to 5 (ps 3 + dfs 2); give one or make them agree",
        ),
        (
            {"space": {"kind": "psdfs", "model_a": {"run_dir": "runs/ps"}}, "budget": {"max_evals": 5}},
            "p.yaml: key 'space': model_a (model A from a finished run) needs mode: sequential",
        ),
        (
            {"space": {**SEQ, "layer_groups": 2, "model_a": {"run_dir": "runs/ps"}}, "budget": {"max_evals": 5}},
            "p.yaml: key 'space': layer_groups is an option of the PS stage, but model A comes from runs/ps "
            "(model_a): drop it",
        ),
        (
            {"space": {**SEQ, "model_a": {"run_dir": "runs/ps"}}, "budget": {"stages": {"ps": 3, "dfs": 2}}},
            "p.yaml: budget.stages: model A comes from runs/ps (space.model_a), so this run is the DFS stage "
            "alone: give its budget as budget.max_evals",
        ),
    ],
)
def test_config_errors_are_one_line(sections, message):
    with pytest.raises(ConfigError) as exc:
        parse_config({**BASE, **sections}, "p.yaml")
    assert str(exc.value) == message


def test_the_budget_of_a_staged_run_is_the_sum_of_its_stages():
    cfg = parse_config({**BASE, "space": SEQ, "budget": {"stages": {"ps": 30, "dfs": 20}}}, "p.yaml")
    assert cfg.budget.max_evals == 50 and (cfg.budget.stages.ps, cfg.budget.stages.dfs) == (30, 20)
    joint = parse_config({**BASE, "space": {"kind": "psdfs"}, "budget": {"max_evals": 5}})
    assert cfg.space.mode == "sequential" and joint.space.mode == "joint"  # the joint form stays the default


def test_model_a_run_dir_must_hold_a_finished_run(world, tmp_path):
    space = {**SEQ, "model_a": {"run_dir": str(tmp_path / "nowhere")}, **DFS_OPTIONS}
    cfg_path = _config(tmp_path, world, "dfs", space, {"max_evals": 2})
    with pytest.raises(ConfigError) as exc:
        run(load_config(cfg_path), tmp_path / "run", config_path=cfg_path, progress=False)
    assert str(exc.value) == f"{cfg_path}: space.model_a.run_dir: run directory {tmp_path / 'nowhere'} does not exist"
    assert not (tmp_path / "run").exists()


def test_status_lists_the_stages(reference, ps_run, tmp_path, world):
    from evomerge.runs.summary import format_status, summarize

    _, run_dir, records = reference
    s = summarize(RunStore(run_dir))
    ps, dfs = best_record(records[:N_PS]), best_record(records[N_PS:])
    assert [(st["name"], st["evaluations"], st["max_evals"], st["best"]["id"]) for st in s["stages"]] == [
        ("ps", N_PS, N_PS, ps["id"]),
        ("dfs", N_DFS, N_DFS, dfs["id"]),
    ]
    lines = format_status(s).splitlines()
    assert f"stage PS   {N_PS} / {N_PS}  best #{ps['id']}  target={ps['objectives']['target']:.4g}" in lines
    assert f"stage DFS  {N_DFS} / {N_DFS}  best #{dfs['id']}  target={dfs['objectives']['target']:.4g}" in lines
    assert "stages" not in summarize(RunStore(ps_run[0]))  # a one-stage run has none


def test_a_ps_stage_stopped_by_its_target_ends_the_run(reference, world, tmp_path):
    """``budget.target`` reached in the PS stage: the run ends there (no DFS stage), finished, with
    the PS best scored on held-out data."""
    _, _, ref_records = reference
    space = {"kind": "psdfs", "mode": "sequential", **PS_OPTIONS, **DFS_OPTIONS}
    target = ref_records[0]["objectives"]["target"]  # the first candidate reaches it
    cfg_path = _config(tmp_path, world, "seq", space, {"stages": {"ps": N_PS, "dfs": N_DFS}, "target": target})
    run(load_config(cfg_path), tmp_path / "run", config_path=cfg_path, progress=False)
    records = RunStore(tmp_path / "run").read_log()
    assert 1 <= len(records) < N_PS and {_stage(r) for r in records} == {"ps"}
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert (progress["state"], progress["stop_reason"], progress["stage"]) == ("finished", "target", "ps")
    assert json.loads((tmp_path / "run" / "validation.json").read_text())["id"] == best_record(records)["id"]
    assert "model_a" not in json.loads((tmp_path / "run" / "meta.json").read_text())["stages"][1]


def test_every_stage_s_checkpoints_carry_the_run_s_fingerprint(reference):
    """A staged run's checkpoints are checked on resume like a plain run's: each carries the
    config and model hashes meta.json records (issue 8 §4)."""
    _, run_dir, _ = reference
    meta = json.loads((run_dir / "meta.json").read_text())
    state = RunStore(run_dir).checkpoints().load_latest()[1]  # the newest: the DFS stage's
    assert state["stage"]["name"] == "dfs"
    want = {k: meta["fingerprint"][k] for k in ("config_sha256", "models_sha256")}
    assert state["fingerprint"] == want and all(len(v) == 64 for v in want.values())


def test_a_malformed_stage_checkpoint_falls_back_to_the_previous_one(reference, tmp_path):
    """A checkpoint with a valid checksum but a wrong structure is corrupt in a staged run too:
    resume warns, takes the previous checkpoint, and finishes as the uninterrupted run."""
    from evomerge.runs.checkpoint import CheckpointDir

    cfg_path, ref_dir, _ = reference
    run_dir = tmp_path / "run"
    proc = _cli("run", str(cfg_path), "--run-dir", str(run_dir), env={"EVOMERGE_CRASH_AT": "after-append:11"})
    assert proc.returncode == 137, proc.stderr
    ckpts = CheckpointDir(run_dir / "checkpoints", keep=10)
    n, state = ckpts.load_latest()
    previous = ckpts.list()[0][1]
    bad = ckpts.save(n + 1, {**state, "n_told": "eleven"})
    warnings = []
    resume(run_dir, progress=False, warn=warnings.append)
    assert warnings == [
        f"warning: checkpoint {bad} is corrupted (malformed: checkpoint.n_told: expected an int, got a str); "
        f"falling back to {previous.name}"
    ]
    assert _log(run_dir) == _log(ref_dir)
