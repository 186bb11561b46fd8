"""A config's ``scorer.fn: mymod:fn`` with ``mymod.py`` next to the config works with the real
``evomerge`` console script, run from another folder (the script does not put the current
directory, let alone the config's, on ``sys.path``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from battery import runs_helpers


def test_console_script_finds_a_callable_next_to_the_config(tmp_path, tiny_llama_family):
    cfg = runs_helpers().tiny_config(tmp_path, tiny_llama_family)
    (tmp_path / "evm_user_scorer.py").write_text(
        "def score(model, tokenizer, examples, value=0.25):\n    return [value] * len(examples)\n"
    )
    data = yaml.safe_load(cfg.read_text())
    data["fitness"]["tasks"][1]["scorer"] = {
        "type": "callable",
        "fn": "evm_user_scorer:score",
        "params": {"value": 0.75},
        "bounded": True,
    }
    cfg.write_text(yaml.safe_dump(data))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = Path(sys.executable).with_name("evomerge")
    out = subprocess.run(
        [str(script), "eval", str(tiny_llama_family["base"]), "--config", str(cfg), "--json", "--limit", "2"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    copy = next(o for o in result["objectives"] if o["task"] == "copy")
    assert copy["value"] == 0.75
