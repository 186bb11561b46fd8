"""Session-wide test set-up: offline hubs, loopback-only Ray, tiny model families built once."""

import os

# Must be set before transformers / datasets / ray are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see evomerge/cli/__init__.py

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama_family(tmp_path_factory):
    """{"base": Path, "experts": [Path, Path]} — 2-layer Llama, hidden 32, char tokenizer."""
    from evomerge.testing import build_family

    return build_family(tmp_path_factory.mktemp("llama"), arch="llama")


@pytest.fixture(scope="session")
def tiny_gpt2_family(tmp_path_factory):
    """{"base": Path, "experts": [Path, Path]} — 2-layer GPT-2, hidden 32, char tokenizer."""
    from evomerge.testing import build_family

    return build_family(tmp_path_factory.mktemp("gpt2"), arch="gpt2")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session, bound to 127.0.0.1, no dashboard."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
