"""File output that survives a kill at any instant: see :mod:`evomerge.io.atomic`."""

from evomerge.io.atomic import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir

__all__ = ["atomic_dir", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir"]
