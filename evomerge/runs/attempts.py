"""``RUN_DIR/attempts.json``: which candidate this process is evaluating, and how often the run's
process died while evaluating each candidate.

An in-process evaluation runs in the run's own process, so a candidate that kills it (the OOM
killer, a segfault in native code, ``os._exit``, the stuck-evaluation watchdog) takes the run down
with it — and, being re-proposed on resume, would do so on every resume. Before each such
evaluation the run writes ``{"running": id, "deaths": {id: n, …}}`` (atomically, fsync'd: one small
file per evaluation); on leaving the search normally it writes ``"running": null``. A resume that
finds a ``running`` candidate with no result in the log knows the process died during it and adds
one death. The scheduler records a candidate with ``run.max_attempts`` deaths as failed without
evaluating it again. The file is plain JSON, read with its structure checked; a damaged one is
reported and treated as empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from evomerge.io import atomic_write_json

NAME = "attempts.json"


class Attempts:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / NAME
        self.deaths: dict[int, int] = {}
        self._running: int | None = None

    def load(self, logged: Iterable[int], warn) -> dict[int, int]:
        """Read the file; a ``running`` candidate the log has no result for died with the process:
        count it, write the file back, and return the deaths per candidate id."""
        running, deaths = None, {}
        try:
            data = json.loads(self.path.read_text())
            running = data["running"]
            deaths = {int(k): int(v) for k, v in data["deaths"].items()}
            if running is not None:
                running = int(running)
            if any(v < 0 for v in deaths.values()):
                raise ValueError("a negative count")
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warn(f"warning: {self.path} is damaged ({exc}); counting candidates' attempts from zero")
            running, deaths = None, {}
        self.deaths = deaths
        if running is not None and running not in set(int(i) for i in logged):
            self.deaths[running] = self.deaths.get(running, 0) + 1
            warn(
                f"warning: the previous process died while evaluating candidate {running} "
                f"({self.deaths[running]} time(s) so far)"
            )
        self._write(None)
        return dict(self.deaths)

    def start(self, candidate_id: int) -> None:
        """Durably note that ``candidate_id`` is being evaluated in this process now."""
        self._write(int(candidate_id))

    def stop(self) -> None:
        """No evaluation is running in this process (it leaves the search alive)."""
        if self._running is not None:
            self._write(None)

    def _write(self, running: int | None) -> None:
        if running is None and self._running is None and not self.deaths and not self.path.exists():
            return  # nothing to record: no file for a run no candidate ever killed
        atomic_write_json(
            self.path, {"running": running, "deaths": {str(k): v for k, v in sorted(self.deaths.items())}}
        )
        self._running = running


__all__ = ["NAME", "Attempts"]
