"""Peak memory of this process, sampled, and a guard that stops it before the machine runs out.

``MemoryWatch`` samples ``/proc/self/status`` (``VmRSS``, ``RssAnon``, ``RssFile``) and the host's
``MemAvailable`` every ``interval`` seconds on a daemon thread, keeps the peaks, and — when
``MemAvailable`` falls below ``floor_gib`` — prints one line and ends the process (exit code 3), so
a benchmark on a shared machine never pushes the others into the OOM killer. Linux only (elsewhere
it records nothing and never stops anything).

Use: ``with MemoryWatch(floor_gib=3) as watch: ...; watch.peaks()`` (GiB), or run a command under it:
``python benchmarks/memwatch.py --floor-gib 3 -- evomerge run config.yaml --run-dir runs/x``
(prints one JSON line of the peaks when the command ends).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path

GiB = float(1 << 30)


def _status() -> dict[str, float]:
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024 / GiB
    except OSError:
        pass
    return out


def available_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GiB
    except OSError:
        return None
    return None


class MemoryWatch:
    def __init__(self, floor_gib: float | None = 3.0, interval: float = 0.05):
        self.floor, self.interval = floor_gib, interval
        self.peak = {"rss_gib": 0.0, "anon_gib": 0.0, "file_gib": 0.0}
        self.min_available_gib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        s = _status()
        for key, name in (("VmRSS", "rss_gib"), ("RssAnon", "anon_gib"), ("RssFile", "file_gib")):
            if key in s:
                self.peak[name] = max(self.peak[name], s[key])
        avail = available_gib()
        if avail is not None:
            self.min_available_gib = avail if self.min_available_gib is None else min(self.min_available_gib, avail)
            if self.floor is not None and avail < self.floor:
                print(
                    f"memwatch: host memory available fell to {avail:.2f} GiB (< {self.floor} GiB): stopping",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(3)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peaks(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.peak.items()}
        out["min_available_gib"] = None if self.min_available_gib is None else round(self.min_available_gib, 2)
        return out


def main(argv: list[str]) -> int:
    floor = 3.0
    if argv[:1] == ["--floor-gib"]:
        floor, argv = float(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: memwatch.py [--floor-gib G] -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    code = 0
    start = time.perf_counter()
    with MemoryWatch(floor) as watch:
        sys.argv = argv
        try:
            if argv[0] == "evomerge":
                from evomerge.cli import main as cli_main

                code = cli_main(argv[1:]) or 0
            else:
                runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    print(json.dumps({"memwatch": watch.peaks(), "seconds": round(time.perf_counter() - start, 2), "rc": code}))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
