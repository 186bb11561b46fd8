"""Fixtures of the bad-input batteries (see ``tests/cli/battery.py``)."""

import pytest

pytest.register_assert_rewrite("battery")

from battery import Env, runs_helpers  # noqa: E402

from evomerge.cli import main  # noqa: E402


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_llama_family):
    """A real two-evaluation run over the tiny family. Never modify it: :class:`battery.Env`
    hands each case its own copy as ``{run}``."""
    root = tmp_path_factory.mktemp("finished")
    cfg = runs_helpers().tiny_config(root, tiny_llama_family)
    assert main(["run", str(cfg), "--run-dir", str(root / "run"), "--max-evals", "2"]) == 0
    return root / "run"


@pytest.fixture
def env(tmp_path, tiny_llama_family, finished_run, monkeypatch, capsys):
    env = Env(tmp_path, tiny_llama_family, finished_run, monkeypatch, capsys)
    yield env
    env.close()
