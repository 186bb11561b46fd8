"""File output: atomic writes (:mod:`evomerge.io.atomic`), what an output may replace
(:mod:`evomerge.io.outputs`), and OS errors as one line (:mod:`evomerge.io.oserrors`)."""

from evomerge.io.atomic import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir
from evomerge.io.oserrors import OSFailure, writing

__all__ = [
    "OSFailure",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "writing",
]
