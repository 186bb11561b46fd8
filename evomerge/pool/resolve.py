"""Turn a model id into a local Hugging Face directory.

An id is either a directory on disk or a hub repository id (``org/name``). Only the files a merge
needs are fetched (weights as safetensors or ``.bin``, configs, tokenizer), never the rest of a
repository (ONNX, GGUF, other frameworks' weights).
"""

from __future__ import annotations

import os
from pathlib import Path

from evomerge.errors import ModelError

# What a merge reads from a hub repository: weights, configs and the tokenizer.
HUB_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
    "*.jinja",
]
# Only when a repository holds no safetensors: the pickled fallback.
BIN_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


def looks_local(model_id: str) -> bool:
    """True for ids a user can only mean as a path: ``/x``, ``./x``, ``../x``, ``~/x``, ``a/b/c``.

    A hub id has at most one slash (``org/name``), so deeper paths cannot be one either.
    """
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1


def _hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return value in {"1", "true", "yes", "on"}


def resolve_model(model_id: str | os.PathLike) -> Path:
    """Local directory holding ``model_id``; downloads hub ids (weights, configs, tokenizer only).

    Raises :class:`ModelError` (one line) for a missing local path, a path that is not a
    directory, or a hub id that cannot be fetched (offline, unknown repository, no network).
    """
    text = os.fspath(model_id)
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ModelError(f"model path '{text}' is not a directory")
    if looks_local(text):
        raise ModelError(f"model path '{text}' does not exist")
    return _from_hub(text)


def _from_hub(repo_id: str) -> Path:
    if _hub_offline():
        # A snapshot already in the local cache is still usable offline.
        cached = _download(repo_id, local_files_only=True)
        if cached is not None:
            return cached
        raise ModelError(f"model '{repo_id}': not a local directory and could not be fetched from the hub (offline)")
    try:
        local = _download(repo_id, local_files_only=False, raise_errors=True)
    except Exception as exc:  # network, auth, unknown repo: all one user-facing line
        reason = _short_reason(exc)
        raise ModelError(
            f"model '{repo_id}': not a local directory and could not be fetched from the hub ({reason})"
        ) from None
    assert local is not None
    return local


def _download(repo_id: str, *, local_files_only: bool, raise_errors: bool = False) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        root = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=local_files_only))
        if not any(root.glob("*.safetensors")):
            root = Path(
                snapshot_download(
                    repo_id, allow_patterns=HUB_PATTERNS + BIN_PATTERNS, local_files_only=local_files_only
                )
            )
        return root
    except Exception:
        if raise_errors:
            raise
        return None


def _short_reason(exc: Exception) -> str:
    name = type(exc).__name__
    if "RepositoryNotFound" in name:
        return "repository not found or not accessible"
    if "Gated" in name:
        return "gated repository: log in with `hf auth login` and accept its terms"
    if "Offline" in name or "Connect" in name or "LocalEntryNotFound" in name:
        return "offline"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return first[:200]
