"""The benchmarks' output: each record printed as one JSON line, and also written to a file."""

from __future__ import annotations

import json


class JsonLines:
    """``emit = JsonLines(path)``; ``emit(record)`` prints it as one JSON line (flushed) and, with a
    ``path``, writes the same line there; ``emit.close()`` closes the file."""

    def __init__(self, path: str | None = None, mode: str = "w"):
        self._sink = open(path, mode) if path else None

    def __call__(self, obj: dict) -> None:
        line = json.dumps(obj)
        print(line, flush=True)
        if self._sink:
            self._sink.write(line + "\n")
            self._sink.flush()

    def close(self) -> None:
        if self._sink:
            self._sink.close()
