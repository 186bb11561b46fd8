"""The same run loop on a local Ray actor pool: every candidate evaluated exactly once, the run
directory complete."""

import pytest
import yaml

from evomerge.config import load_config
from evomerge.runs.api import run
from evomerge.runs.store import RunStore

pytestmark = pytest.mark.ray


def test_digits_run_on_two_ray_actors(tmp_path, ray_session):
    cfg_path = tmp_path / "ray.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "problem": "digits",
                "driver": {"name": "random"},
                "budget": {"max_evals": 10},
                "evaluator": {"backend": "ray", "num_workers": 2, "num_gpus": 0},
                "run": {"seed": 0, "checkpoint_every": 4},
            }
        )
    )
    status = run(load_config(cfg_path), tmp_path / "run", config_path=cfg_path, progress=False)
    records = RunStore(tmp_path / "run").read_log()
    assert sorted(r["id"] for r in records) == list(range(10))
    assert all(r["status"] == "ok" for r in records)
    assert len({r["worker"] for r in records}) == 2  # both actors did work
    assert status["evaluations"] == 10 and status["best"]["validation"]["test_accuracy"] > 0
    assert (tmp_path / "run" / "best" / "recipe.yaml").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*")) == [
        "ckpt-00000008.pkl",
        "ckpt-00000010.pkl",
    ]
