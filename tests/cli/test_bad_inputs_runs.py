"""Bad inputs around runs: checkpoints (pickles, crafted or malformed states), resume after the
config or the models changed, devices and backends that are not there, limits out of range, and
source weights holding NaN or inf — each one line, the right exit status, no traceback, nothing
executed from the run directory and no run directory left behind by a refused ``run``.

Cases run in-process with the shared harness of ``tests/cli/battery.py``."""

import json
import pickle
import re
from pathlib import Path

import pytest
from battery import Case, case_id, edit_yaml, run_case
from safetensors.torch import load_file, save_file

from evomerge.cli import main
from evomerge.runs.checkpoint import MAGIC, CheckpointDir, decode, encode

HINT = "resume with --allow-config-change to continue anyway"
MARKER = "pwned"


@pytest.fixture(autouse=True)
def _quiet_transformers():
    """A resume that gets through loads models: transformers' progress bars would add lines to stderr."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    yield
    logging.enable_progress_bar()


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def fn(d):
        for k in keys:
            d = d.setdefault(k, {})
        d[last] = value

    return fn


def _run_cfg(*keys_and_value):
    """Edit ``{run}/config.yaml``."""
    return lambda env: edit_yaml(env["run"] / "config.yaml", _set(*keys_and_value))


def _cfg(*keys_and_value):
    """Edit ``{cfg}`` (a fresh run's config)."""
    return lambda env: edit_yaml(env["cfg"], _set(*keys_and_value))


def _ckpts(env) -> CheckpointDir:
    return CheckpointDir(env["run"] / "checkpoints")


def _newest(env) -> Path:
    return _ckpts(env).list()[0][1]


class _Evil:
    """Unpickling this creates the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _crafted(env) -> bytes:
    return pickle.dumps({"driver": _Evil(env["tmp"] / MARKER)})


def _pickle_ckpt(env):
    """The newest checkpoint replaced by a pickle that would create the marker (bare and framed
    with a valid checksum); a v1-style pickle next to them."""
    import hashlib

    data = _crafted(env)
    _newest(env).write_bytes(MAGIC + hashlib.sha256(data).digest() + data)


def _pickle_legacy(env):
    (env["run"] / "checkpoints" / "ckpt-99999999.pkl").write_bytes(_crafted(env))


def _edit_state(fn):
    """The newest checkpoint rewritten, checksum valid, after ``fn(state)``."""

    def setup(env):
        path = _newest(env)
        state = decode(path.read_bytes())
        fn(state)
        path.write_bytes(encode(state))

    return setup


def _every_ckpt_bad(env):
    for _, path in _ckpts(env).list():
        path.write_bytes(b"not a checkpoint")


def _fingerprint(fn):
    def setup(env):
        path = env["run"] / "meta.json"
        meta = json.loads(path.read_text())
        fn(meta["fingerprint"])
        path.write_text(json.dumps(meta))

    return setup


def _poison_weight(role, value, name="model.norm.weight"):
    def setup(env):
        path = env[role] / "model.safetensors"
        tensors = load_file(path)
        t = tensors[name].clone()
        t.reshape(-1)[3] = value
        tensors[name] = t
        save_file(tensors, path, metadata={"format": "pt"})

    return setup


def _no_marker(env):
    assert not (env["tmp"] / MARKER).exists()


def _ckpt_warning(why):
    """The newest (and only) checkpoint is skipped: the resume replays the whole log."""
    return lambda env: [
        re.compile(
            re.escape(f"warning: checkpoint {_newest(env)} is corrupted ({why}")
            + r".*; falling back to the start of the log"
        ),
        f"warning: no readable checkpoint in {env['run']}/checkpoints; replaying the whole log from the start",
    ]


def _fresh_run_models_changed(env):
    """A one-evaluation run over copied models, then the copy of the base model edited."""
    assert main(["run", str(env["cfg"]), "--run-dir", str(env["tmp"] / "r1"), "--max-evals", "1"]) == 0
    cfg = json.loads((env["base"] / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3
    (env["base"] / "config.json").write_text(json.dumps(cfg))


def _digits_cfg(env, **run_section):
    """A digits run config in ``{tmp}/digits.yaml``."""
    import yaml

    doc = {
        "problem": "digits",
        "driver": {"name": "random"},
        "budget": {"max_evals": 6},
        "run": {"seed": 1, **run_section},
    }
    path = env["tmp"] / "digits.yaml"
    path.write_text(yaml.safe_dump(doc))
    return env.add("digits", path)


def _every_candidate_fails(**run_section):
    """The digits run's plan with a worker whose results lack the objective: every candidate fails."""

    def setup(env):
        import evomerge.runs.api as api
        from evomerge.evaluator import FunctionWorkerSpec, InProcessBackend

        real = api.build_run_plan

        def failing(*args, **kw):
            plan = real(*args, **kw)
            plan.make_backend = lambda: InProcessBackend(FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere"))
            return plan

        _digits_cfg(env, **run_section)
        env.monkeypatch.setattr(api, "build_run_plan", failing)

    return setup


def _failed_run_then_resume(env):
    _every_candidate_fails(failure_breaker={"first": 2})(env)
    assert main(["run", str(env["digits"]), "--run-dir", str(env["tmp"] / "failed")]) == 1


def _no_ray(env):
    import sys

    env.monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


NO_OBJECTIVE = "result has no objective train_accuracy (got score)"

CONFIG_CHANGES = [
    ("method", ("space", "method", "dare_ties"), "space.method changed from ties to dare_ties"),
    ("seed", ("run", "seed", 7), "run.seed changed from 0 to 7"),
    (
        "driver-option",
        ("driver", "options", "population_size", 6),
        "driver.options.population_size changed from 4 to 6",
    ),
    ("layer-groups", ("space", "layer_groups", 3), "space.layer_groups changed from 2 to 3"),
    ("dtype", ("evaluator", "dtype", "bfloat16"), re.compile(r"evaluator\.dtype changed from \S+ to bfloat16")),
]

CASES = [
    # -- checkpoints never execute code ---------------------------------------------------------
    Case(
        "resume-crafted-pickle-checkpoint",
        "resume {run}",
        _ckpt_warning("malformed"),
        code=0,
        setup=_pickle_ckpt,
        after=_no_marker,
    ),
    Case(
        "resume-v1-pickle-checkpoint",
        "resume {run}",
        lambda env: (
            f"error: {env['run']}/checkpoints/ckpt-99999999.pkl: a pickle checkpoint written by evomerge v1, which is "
            f"never loaded (unpickling a file can run code); move {env['run']}/checkpoints/ckpt-*.pkl out of the run "
            "directory and resume again: the search is then rebuilt by replaying evaluations.jsonl (nothing is "
            "evaluated twice)"
        ),
        setup=_pickle_legacy,
        protect=["{run}"],
        after=_no_marker,
    ),
    Case(
        "resume-checkpoint-missing-section",
        "resume {run}",
        _ckpt_warning("malformed: checkpoint.n_told: missing"),
        code=0,
        setup=_edit_state(lambda s: s.pop("n_told")),
    ),
    Case(
        "resume-checkpoint-wrong-type",
        "resume {run}",
        _ckpt_warning("malformed: checkpoint.elapsed: expected a number, got a str"),
        code=0,
        setup=_edit_state(lambda s: s.update(elapsed="soon")),
    ),
    Case(
        "resume-checkpoint-driver-wrong-shape",
        "resume {run}",
        _ckpt_warning("malformed: driver.optimizer.attrs._mean: expected shape (16,), got (1,)"),
        code=0,
        setup=_edit_state(lambda s: s["driver"]["optimizer"]["attrs"].update(_mean=[0.0])),
    ),
    Case(
        "resume-checkpoint-rng-not-a-state",
        "resume {run}",
        _ckpt_warning("malformed: checkpoint.rng.python.internal: expected shape (625,)"),
        code=0,
        setup=_edit_state(lambda s: s["rng"]["python"].update(internal=[1, 2, 3])),
    ),
    Case(
        "resume-checkpoint-negative-n-told",
        "resume {run}",
        _ckpt_warning("malformed: checkpoint.n_told: expected an int >= 0, got -1"),
        code=0,
        setup=_edit_state(lambda s: s.update(n_told=-1)),
    ),
    Case(
        "resume-every-checkpoint-unreadable",
        "resume {run}",
        lambda env: [
            *(
                re.compile(re.escape(f"warning: checkpoint {p} is corrupted (not an evomerge checkpoint") + ".*")
                for _, p in _ckpts(env).list()
            ),
            f"warning: no readable checkpoint in {env['run']}/checkpoints; replaying the whole log from the start",
        ],
        code=0,
        setup=_every_ckpt_bad,
    ),
    Case(
        "resume-checkpoint-of-another-config",
        "resume {run}",
        "error: the newest checkpoint was written with a config or models that meta.json does not record (was "
        f"meta.json edited?); {HINT}",
        setup=_edit_state(lambda s: s["fingerprint"].update(config_sha256="0" * 64)),
        protect=["{run}"],
    ),
    Case(
        "resume-log-shorter-than-checkpoint",
        "resume {run}",
        "error: {run}: the checkpoint has told 5 evaluations but evaluations.jsonl holds only 2; the log was truncated",
        setup=_edit_state(lambda s: s.update(n_told=5)),
    ),
    # -- resume refuses a changed config or changed models -------------------------------------
    *(
        Case(
            f"resume-config-{name}-changed",
            "resume {run}",
            re.compile(
                f"error: config.yaml: {what.pattern if isinstance(what, re.Pattern) else re.escape(what)} "
                f"since the run started; {HINT}"
            ),
            setup=_run_cfg(*edit),
            protect=["{run}"],
        )
        for name, edit, what in CONFIG_CHANGES
    ),
    Case(
        "resume-scorer-changed",
        "resume {run}",
        f"error: config.yaml: fitness.tasks[0].scorer.type changed from nll to exact_match since the run started; {HINT}",
        setup=lambda env: edit_yaml(
            env["run"] / "config.yaml", lambda d: d["fitness"]["tasks"][0]["scorer"].update(type="exact_match")
        ),
        protect=["{run}"],
    ),
    Case(
        "resume-two-changes",
        "resume {run}",
        f"error: config.yaml: run.seed changed from 0 to 9 (and 1 more change) since the run started; {HINT}",
        setup=lambda env: edit_yaml(
            env["run"] / "config.yaml", lambda d: (d["space"].update(method="dare_ties"), d["run"].update(seed=9))
        ),
        protect=["{run}"],
    ),
    Case(
        "resume-model-path-changed",
        "resume {run}",
        lambda env: (
            f"error: config.yaml: models.base changed from {env.family['base']} to {env['base']} since the "
            f"run started; {HINT}"
        ),
        setup=lambda env: edit_yaml(env["run"] / "config.yaml", lambda d: d["models"].update(base=str(env["base"]))),
        protect=["{run}"],
    ),
    Case(
        "resume-model-config-edited",
        lambda env: ["resume", env["tmp"] / "r1"],
        lambda env: f"error: models.base ({env['base']}): its config.json changed since the run started; {HINT}",
        setup=_fresh_run_models_changed,
    ),
    Case(
        "resume-meta-fingerprint-tampered",
        "resume {run}",
        f"error: config.yaml: the config changed (meta.json no longer records how) since the run started; {HINT}",
        setup=lambda env: (
            _run_cfg("run", "seed", 5)(env),
            _fingerprint(lambda fp: fp["config"].update(junk=1))(env),
        ),
        protect=["{run}"],
    ),
    # -- validate before creating anything ----------------------------------------------------
    Case(
        "run-device-cuda-without-cuda",
        "run {cfg} --run-dir {tmp}/new",
        "error: {cfg}: evaluator.device: 'cuda' requested but CUDA is not available on this machine (use cpu or auto)",
        setup=_cfg("evaluator", "device", "cuda"),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-device-cuda-index-without-cuda",
        "run {cfg} --run-dir {tmp}/new",
        "error: {cfg}: evaluator.device: 'cuda:3' requested but CUDA is not available on this machine (use cpu or auto)",
        setup=_cfg("evaluator", "device", "cuda:3"),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-device-mps-off-a-mac",
        "run {cfg} --run-dir {tmp}/new",
        "error: {cfg}: evaluator.device: 'mps' requested but MPS is not available on this machine (use cpu or auto)",
        setup=_cfg("evaluator", "device", "mps"),
        absent=["{tmp}/new"],
    ),
    Case(
        "resume-device-cuda-without-cuda",
        "resume {run}",
        "error: {run}/config.yaml: evaluator.device: 'cuda' requested but CUDA is not available on this machine "
        "(use cpu or auto)",
        setup=_run_cfg("evaluator", "device", "cuda"),
        protect=["{run}"],
    ),
    Case(
        "run-target-unknown-objective",
        "run {cfg} --run-dir {tmp}/new",
        re.compile(r"error: .*budget\.target: unknown objective 'accuracy'.*"),
        setup=_cfg("budget", "target", {"accuracy": 0.9}),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-ray-address-unreachable",
        "run {cfg} --run-dir {tmp}/new --address 127.0.0.1:1",
        re.compile(r"error: .*127\.0\.0\.1:1.*"),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-ray-client-address-unreachable",
        "run {cfg} --run-dir {tmp}/new --backend ray --address ray://127.0.0.1:1",
        re.compile(r"error: .*ray://127\.0\.0\.1:1.*"),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-address-with-inprocess-backend",
        "run {cfg} --run-dir {tmp}/new --backend inprocess --address auto",
        "error: --address auto names a Ray cluster, but --backend is inprocess; drop --address or use --backend ray",
        absent=["{tmp}/new"],
    ),
    Case(
        "run-ray-not-installed",
        "run {cfg} --run-dir {tmp}/new --backend ray",
        "error: {cfg}: evaluator.backend: ray needs the ray package, which is not installed (pip install 'ray[default]')",
        setup=_no_ray,
        absent=["{tmp}/new"],
    ),
    # -- a run that cannot succeed says so ----------------------------------------------------
    Case(
        "run-first-candidates-all-fail",
        "run {digits} --run-dir {tmp}/new",
        f"error: the run stopped: the first 3 candidates all failed; most common error (3 of 3): {NO_OBJECTIVE}; "
        "fix the cause, then resume it",
        code=1,
        setup=_every_candidate_fails(failure_breaker={"first": 3}),
    ),
    Case(
        "run-no-candidate-succeeded",
        "run {digits} --run-dir {tmp}/new",
        f"error: no candidate succeeded in 6 evaluations; most common error (6 of 6): {NO_OBJECTIVE}",
        code=1,
        setup=_every_candidate_fails(failure_breaker={"first": 0, "window": 0}),
    ),
    Case(
        "run-breaker-window",
        "run {digits} --run-dir {tmp}/new",
        f"error: the run stopped: 4 of the last 4 candidates failed (more than 50%); most common error (4 of 4): "
        f"{NO_OBJECTIVE}; fix the cause, then resume it",
        code=1,
        setup=_every_candidate_fails(failure_breaker={"first": 0, "window": 4, "fraction": 0.5}),
    ),
    Case(
        "resume-still-failing",
        "resume {tmp}/failed",
        f"error: the run stopped: the first 2 candidates all failed; most common error (2 of 2): {NO_OBJECTIVE}; "
        "fix the cause, then resume it",
        code=1,
        setup=_failed_run_then_resume,
    ),
    # -- limits out of range ------------------------------------------------------------------
    Case(
        "run-max-attempts-zero",
        "run {cfg} --run-dir {tmp}/new",
        re.compile(r"error: .*run\.max_attempts.*"),
        setup=_cfg("run", "max_attempts", 0),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-breaker-fraction-above-one",
        "run {cfg} --run-dir {tmp}/new",
        re.compile(r"error: .*run\.failure_breaker\.fraction.*"),
        setup=_cfg("run", "failure_breaker", {"fraction": 1.5}),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-breaker-unknown-key",
        "run {cfg} --run-dir {tmp}/new",
        re.compile(r"error: .*run\.failure_breaker\.frist.*"),
        setup=_cfg("run", "failure_breaker", {"frist": 3}),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-eval-timeout-negative",
        "run {cfg} --run-dir {tmp}/new --eval-timeout -1",
        re.compile(r"error: .*evaluator\.timeout.*"),
        absent=["{tmp}/new"],
    ),
    Case(
        "run-evaluator-timeout-not-a-number",
        "run {cfg} --run-dir {tmp}/new",
        re.compile(r"error: .*evaluator\.timeout.*"),
        setup=_cfg("evaluator", "timeout", "soon"),
        absent=["{tmp}/new"],
    ),
    Case(
        "resume-eval-timeout-zero",
        "resume {run} --eval-timeout 0",
        re.compile(r"error: .*evaluator\.timeout.*"),
        protect=["{run}"],
    ),
    # -- NaN or inf in the source weights -----------------------------------------------------
    Case(
        "merge-nan-in-expert",
        "merge {recipe} -o {tmp}/out",
        "error: model '{e1}': tensor 'model.norm.weight' holds 1 NaN or inf value(s) (the first at index [3]); "
        "the checkpoint is damaged",
        setup=_poison_weight("e1", float("nan")),
        absent=["{tmp}/out"],
    ),
    Case(
        "merge-inf-in-base",
        "merge {recipe} -o {tmp}/out",
        re.compile(r"error: model '.*': tensor 'model\.norm\.weight' holds 1 NaN or inf value\(s\) .*"),
        setup=_poison_weight("base", float("inf")),
        absent=["{tmp}/out"],
    ),
    Case(
        "eval-nan-in-model",
        "eval {e2} --config {cfg}",
        "error: model '{e2}': tensor 'model.norm.weight' holds 1 NaN or inf value(s) (the first at index [3]); "
        "the checkpoint is damaged",
        setup=_poison_weight("e2", float("-inf")),
    ),
    Case(
        "run-nan-in-expert",
        "run {cfg} --run-dir {tmp}/new",
        "error: model '{e2}': tensor 'model.norm.weight' holds 1 NaN or inf value(s) (the first at index [3]); "
        "the checkpoint is damaged",
        setup=_poison_weight("e2", float("nan")),
        absent=["{tmp}/new"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input(case, env):
    run_case(case, env)


def test_the_battery_is_large():
    assert len({c.id for c in CASES}) == len(CASES) >= 30


def test_a_budget_change_needs_no_flag_and_allow_config_change_lets_a_change_through(env, capsys):
    run = env["run"]
    edit_yaml(run / "config.yaml", _set("budget", "max_evals", 3))
    capsys.readouterr()
    assert main(["resume", str(run)]) == 0
    assert capsys.readouterr().err == ""
    assert len(env["log"].read_text().splitlines()) == 3
    edit_yaml(run / "config.yaml", _set("run", "seed", 4))
    edit_yaml(run / "config.yaml", _set("budget", "max_evals", 4))
    assert main(["resume", str(run)]) == 2
    assert main(["resume", str(run), "--allow-config-change"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "warning: config.yaml: run.seed changed from 0 to 4 since the run started; continuing (--allow-config-change)"
    )
    meta = json.loads((run / "meta.json").read_text())
    assert [h["changes"] for h in meta["fingerprint_history"]] == [["config.yaml: run.seed changed from 0 to 4"]]
    assert meta["fingerprint_history"][0]["replaced_after"] == 3
    # the new config is now the run's: the next resume needs no flag
    edit_yaml(run / "config.yaml", _set("budget", "max_evals", 5))
    assert main(["resume", str(run)]) == 0
    assert capsys.readouterr().err == ""
    assert len(env["log"].read_text().splitlines()) == 5
