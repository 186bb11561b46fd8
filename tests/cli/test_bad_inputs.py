"""What a user sees when they get something wrong: for every command, one ``error:`` line that
names the problem (file, key, line, expected vs got), exit status 2, no traceback, and no run or
output directory left behind — checked in-process through ``evomerge.cli.main`` with the shared
harness of ``tests/cli/battery.py``."""

import json
import re
import shutil

import pytest
from battery import Case, case_id, edit_yaml, run_case

from evomerge.cli import main


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def fn(d):
        for k in keys:
            d = d[k]
        d[last] = value

    return fn


def _cfg_edit(*keys_and_value):
    return lambda env: edit_yaml(env["cfg"], _set(*keys_and_value))


def _rows(env, fn):
    path = env["tmp"] / "add.jsonl"
    env["cfg"]  # writes the tasks
    rows = path.read_text().splitlines()
    fn(rows)
    path.write_text("\n".join(rows) + "\n")


def _missing_column(env):
    def fn(rows):
        rows[6] = '{"q": "1+1="}'  # line 8 once the blank line below is in
        rows.insert(2, "")  # blank lines are skipped but still counted

    _rows(env, fn)


def _torn_row(env):
    def fn(rows):
        rows.insert(2, "")
        rows[4] = '{"q": "1+1=", "a": '

    _rows(env, fn)


def _damage_log(record_fn):
    def setup(env):
        log = env["log"]
        lines = log.read_text().splitlines()
        lines[0] = record_fn(json.loads(lines[0]))
        log.write_text("\n".join(lines) + "\n")

    return setup


def _drop_status(rec):
    del rec["status"]
    return json.dumps(rec)


def _file(name, text="keep"):
    def setup(env):
        p = env["tmp"] / name
        p.write_text(text)
        env.add(name.replace(".", "_"), p)

    return setup


def _dir(name):
    def setup(env):
        p = env["tmp"] / name
        p.mkdir()
        env.add(name, p)

    return setup


def _no_weights(env):
    d = env["tmp"] / "no_weights"
    d.mkdir()
    shutil.copy(env["base"] / "config.json", d)


def _toyworld_cfg(section):
    def setup(env):
        import yaml

        (env["tmp"] / "tw.yaml").write_text(yaml.safe_dump({"toyworld": section, "budget": {"max_evals": 2}}))

    return setup


def _expert_is_base(env):
    edit_yaml(env["cfg"], lambda d: d["models"]["experts"].__setitem__("e2", d["models"]["base"]))


NEW = "{tmp}/new"  # a run directory that must not appear

CASES = [
    # ---- argparse: usage mistakes are one line too --------------------------------------------
    Case(
        "usage-bad-int",
        "run {tmp}/c.yaml --max-evals ten",
        "error: evomerge run: argument --max-evals: invalid int value: 'ten' (see evomerge run --help)",
    ),
    Case(
        "usage-bad-choice",
        "export {tmp} --format onnx -o x",
        "error: evomerge export: argument --format: invalid choice: 'onnx' (choose from 'recipe', 'mergekit', 'hf') "
        "(see evomerge export --help)",
    ),
    Case(
        "usage-missing-argument",
        "status",
        "error: evomerge status: the following arguments are required: RUN_DIR (see evomerge status --help)",
    ),
    # ---- run configs --------------------------------------------------------------------------
    # Used to pass the plan (x0 is valid) and fail at the first genome near the edge, mid-run.
    Case(
        "config-range-outside-valid",
        f"run {{cfg}} --run-dir {NEW}",
        "error: parameter space: ranges['density'] = [0, 2] goes outside the valid range of density, [0, 1]",
        setup=_cfg_edit("space", "ranges", {"density": [0.0, 2.0]}),
        absent=[NEW],
    ),
    # Used to pass the plan and fail when the scheduler started, with a run directory written.
    Case(
        "config-target-unknown-objective",
        f"run {{cfg}} --run-dir {NEW}",
        "error: {cfg}: budget.target: unknown objective 'cpy' (did you mean 'copy'? known: add, copy)",
        setup=_cfg_edit("budget", "target", {"add": -1.0, "cpy": -2.0}),
        absent=[NEW],
    ),
    Case(
        "data-row-missing-column",
        f"run {{cfg}} --run-dir {NEW}",
        "error: task 'add': column 'a' (field answer) missing in {tmp}/add.jsonl:8; columns: q",
        setup=_missing_column,
        absent=[NEW],
    ),
    Case(
        "data-row-invalid-json",
        f"run {{cfg}} --run-dir {NEW}",
        "error: {tmp}/add.jsonl:5: invalid JSON (Expecting value)",
        setup=_torn_row,
        absent=[NEW],
    ),
    Case(
        "data-source-is-a-directory",
        f"run {{cfg}} --run-dir {NEW}",
        "error: task 'add': source.path {tmp} is a directory, expected a jsonl file",
        setup=lambda env: edit_yaml(
            env["cfg"], lambda d: d["fitness"]["tasks"][0]["source"].update(path=str(env["tmp"]))
        ),
        absent=[NEW],
    ),
    Case(
        "config-fitness-unknown-key",
        f"run {{cfg}} --run-dir {NEW}",
        "error: {cfg} (fitness): objective: unknown key (did you mean 'objectives'?)",
        setup=_cfg_edit("fitness", "objective", []),
        absent=[NEW],
    ),
    Case(
        "config-scorer-unknown-key",
        f"run {{cfg}} --run-dir {NEW}",
        "error: {cfg} (fitness): task 'copy': scorer.tpye: unknown key (did you mean 'type'?)",
        setup=lambda env: edit_yaml(env["cfg"], lambda d: d["fitness"]["tasks"][1]["scorer"].update(tpye="nll")),
        absent=[NEW],
    ),
    Case(
        "models-expert-equal-to-base",
        f"run {{cfg}} --run-dir {NEW} --max-evals 1",
        re.compile(r"error: .*models\.experts\.e2.*models\.base.*"),
        setup=_expert_is_base,
        absent=[NEW],
    ),
    Case(
        "flags-closed-ray-port",
        f"run {{cfg}} --run-dir {NEW} --backend ray --address 127.0.0.1:1",
        re.compile(r"error: .*127\.0\.0\.1:1.*"),
        absent=[NEW],
    ),
    # ---- run directories ----------------------------------------------------------------------
    *[
        Case(
            f"rundir-is-a-file-{cmd}",
            f"{cmd} {{notes_txt}}" + (" -o {tmp}/o.yaml" if cmd == "export" else ""),
            "error: {notes_txt} is a file, not a run directory",
            setup=_file("notes.txt", "x"),
            protect=["{notes_txt}"],
        )
        for cmd in ("status", "resume", "report", "export")
    ],
    Case(
        "log-record-without-status",
        "status {run}",
        "error: {log}: line 1 is not a valid evaluation record (no 'status' field); the log is damaged",
        setup=_damage_log(_drop_status),
    ),
    Case(
        "log-record-not-an-object",
        "export {run} -o {tmp}/o.yaml",
        "error: {log}: line 1 is not a valid evaluation record (a JSON list, not an object); the log is damaged",
        setup=_damage_log(lambda rec: "[1, 2]"),
        absent=["{tmp}/o.yaml"],
    ),
    # ---- export -------------------------------------------------------------------------------
    Case(
        "export-hf-onto-a-file",
        "export {run} --format hf -o {taken_txt} --force",
        "error: output {taken_txt} is a file; --format hf writes a checkpoint directory",
        setup=_file("taken.txt"),
        protect=["{taken_txt}"],
    ),
    Case(
        "export-yaml-onto-a-directory",
        "export {run} -o {dir} --force",
        "error: output {dir} is a directory; this format writes one YAML file: give a file name",
        setup=_dir("dir"),
        protect=["{dir}"],
    ),
    Case(
        "export-unknown-candidate",
        "export {run} --which 99999 -o {tmp}/x.yaml",
        "error: {log}: no candidate with id 99999 (ok ids: 0..1)",
        absent=["{tmp}/x.yaml"],
    ),
    # ---- merge and eval -----------------------------------------------------------------------
    Case(
        "merge-bad-device",
        "merge {recipe} -o {tmp}/out --device tpu",
        "error: device: expected cpu, cuda, cuda:N or mps, got 'tpu'",
        absent=["{tmp}/out"],
    ),
    Case(
        "eval-bad-device",
        "eval {base} --config {cfg} --device tpu",
        "error: device: expected cpu, cuda, cuda:N or mps, got 'tpu'",
    ),
    Case(
        "eval-model-without-weights",
        "eval {tmp}/no_weights --config {cfg}",
        "error: model '{tmp}/no_weights': no model.safetensors, model.safetensors.index.json, "
        "pytorch_model.bin or pytorch_model.bin.index.json in {tmp}/no_weights",
        setup=_no_weights,
    ),
    Case("eval-limit-zero", "eval {base} --config {cfg} --limit 0", "error: --limit must be >= 1, got 0"),
    Case(
        "eval-config-is-a-directory",
        "eval {base} --config {tmp}",
        "error: {tmp} is a directory, expected a config file (YAML)",
    ),
    # A toy-world run config: its section is checked by the run config's rules before a world is built.
    Case(
        "eval-toyworld-unknown-key",
        "eval {base} --config {tmp}/tw.yaml",
        "error: {tmp}/tw.yaml: unknown key 'toyworld.sed' (did you mean 'toyworld.seed'?)",
        setup=_toyworld_cfg({"preset": "test", "sed": 1}),
    ),
    Case(
        "eval-toyworld-bad-seed",
        "eval {base} --config {tmp}/tw.yaml",
        "error: {tmp}/tw.yaml: key 'toyworld.seed': Input should be a valid integer, unable to parse string "
        "as an integer (got 'x')",
        setup=_toyworld_cfg({"preset": "test", "seed": "x"}),
    ),
    # ---- toyworld and demo --------------------------------------------------------------------
    Case(
        "toyworld-dir-is-a-file",
        "toyworld --preset test --dir {file}",
        "error: {file}: is a file; the toy world needs a directory (choose an empty or new one)",
        setup=_file("file", "x"),
        protect=["{file}"],
    ),
    # Used to run the full 300-evaluation demo (0 read as "not given").
    Case(
        "demo-max-evals-zero",
        "demo --preset test --max-evals 0 --run-dir {tmp}/d",
        "error: demo: --max-evals must be >= 1, got 0",
        absent=["{tmp}/d"],
    ),
    # Used to build the toy world and plan the search first: one line now, no progress chatter.
    Case(
        "demo-run-dir-holds-a-run",
        "demo --preset test --max-evals 2 --run-dir {run}",
        "error: run directory {run} already holds a run; continue it with `evomerge resume {run}` or pick another --run-dir",
        protect=["{run}"],
    ),
    Case(
        "demo-run-dir-is-a-file",
        "demo --preset test --max-evals 2 --run-dir {file}",
        "error: {file} is a file, not a run directory; pick another --run-dir",
        setup=_file("file", "x"),
        protect=["{file}"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input(case, env):
    run_case(case, env)


def test_help_and_version_still_exit_0():
    assert main(["--version"]) == 0
