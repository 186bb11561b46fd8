"""Bad inputs to `evomerge run`: each is one line on stderr, exit status 2, and no run directory."""

import importlib.util
from pathlib import Path

import yaml

from evomerge.cli import main

_spec = importlib.util.spec_from_file_location(
    "runs_helpers", Path(__file__).resolve().parents[1] / "runs" / "runs_helpers.py"
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
tiny_config = _helpers.tiny_config


def _run(capsys, cfg_path, run_dir):
    code = main(["run", str(cfg_path), "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _edit(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_bad_inputs_one_line_each(tmp_path, capsys, tiny_llama_family, tiny_gpt2_family):
    cfg = tiny_config(tmp_path, tiny_llama_family)
    run_dir = tmp_path / "run"
    cases = [
        (
            lambda d: d["models"]["experts"].__setitem__("e2", str(tmp_path / "nope")),
            f"error: {cfg}: models.experts.e2: model path '{tmp_path / 'nope'}' does not exist",
        ),
        (lambda d: d["models"]["experts"].__setitem__("e2", str(tiny_gpt2_family["experts"][0])), "error: "),
        (
            lambda d: d["driver"].__setitem__("name", "cmaess"),
            f"error: {cfg}: key 'driver.name': unknown driver 'cmaess' (did you mean 'cmaes'?)",
        ),
        (
            lambda d: d["space"].__setitem__("method", "tie"),
            f"error: {cfg}: key 'space.method': unknown merge method 'tie' (did you mean 'ties'?)",
        ),
        (
            lambda d: d["space"].__setitem__("layer_group", 2),
            f"error: {cfg}: unknown key 'space.layer_group' (did you mean 'space.layer_groups'?)",
        ),
        (
            lambda d: (
                (tmp_path / "empty.jsonl").write_text("")
                or d["fitness"]["tasks"][0]["source"].__setitem__("path", "empty.jsonl")
            ),
            "error: ",
        ),
    ]
    original = cfg.read_text()
    for edit, start in cases:
        cfg.write_text(original)
        _edit(cfg, edit)
        code, err = _run(capsys, cfg, run_dir)
        assert code == 2, err
        assert len(err) == 1 and err[0].startswith(start), err
        assert not run_dir.exists()
    # the two whose exact text belongs to other modules: name what is wrong
    cfg.write_text(original)
    _edit(cfg, cases[1][0])
    line = _run(capsys, cfg, run_dir)[1][0]
    assert "gpt2" in line.lower() or "architecture" in line.lower(), line
    cfg.write_text(original)
    _edit(cfg, cases[5][0])
    assert "empty" in _run(capsys, cfg, run_dir)[1][0]


def test_missing_config_and_missing_run_dir(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: config file {tmp_path / 'none.yaml'} does not exist"
    assert main(["resume", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: run directory {tmp_path / 'nothing'} does not exist"
    assert main(["status", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path} is not an evomerge run directory (no config.yaml)"
