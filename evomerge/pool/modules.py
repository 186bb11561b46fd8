"""A checkpoint on disk as a runnable Hugging Face module (what a worker merges into, a data-flow source)."""

from __future__ import annotations

from evomerge.errors import ModelError


def load_causal_lm(ref: str, *, device, dtype, role: str = "model"):
    """``AutoModelForCausalLM`` of the checkpoint ``ref`` (a directory or hub id) on ``device``, in
    eval mode; a checkpoint that cannot be read is one line naming ``role`` and ``ref``."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {role} {ref!r}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()
