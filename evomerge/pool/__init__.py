"""Model pool: resolve model ids, read checkpoints lazily, validate them together, cache task vectors."""

from evomerge.pool.lazy import LazyCheckpoint, StateCheckpoint
from evomerge.pool.modules import load_causal_lm
from evomerge.pool.pool import ModelPool
from evomerge.pool.resolve import resolve_model

__all__ = ["LazyCheckpoint", "ModelPool", "StateCheckpoint", "load_causal_lm", "resolve_model"]
