"""Synthetic evaluate functions: model-free workloads for tests, benchmarks and examples.

They live in the package (not in a test file) so Ray workers can import them by name
(``FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere")``) without the test directory on
their ``sys.path``.

Recipes are plain dicts built by the caller: ``{"genome": [...], ...}`` plus optional controls:

* ``"sleep"``: seconds to sleep before scoring (simulates uneven evaluation times);
* ``"raise"``: a message — raise ``RuntimeError(message)`` (a failing candidate);
* ``"nan"``: true — return a NaN objective;
* ``"die_once"``: a file path — if the file does not exist, create it and ``os._exit(1)`` (kills
  the process exactly once across every worker, so a re-queued candidate succeeds);
* ``"die"``: true — ``os._exit(1)`` every time (a candidate that always kills its worker);
* ``"stuck"``: seconds to sleep with ``SIGALRM`` blocked (native code that ignores the worker's
  time limit);
* ``"sticky"``: a message — raise ``RuntimeError(message)``, and so does every later call in this
  process (an error that poisons a CUDA context, on a CPU);
* ``"exit"``: an exit status — raise ``SystemExit`` (a library calling ``sys.exit``);
* ``"interrupt"``: true — raise ``KeyboardInterrupt`` with no signal (a library raising it).
"""

from __future__ import annotations

import os
import time

import numpy as np

SPHERE_TARGET = 0.3
_poisoned: list[str] = []  # "sticky": the error every later call in this process raises


def sphere(recipe: dict, n_examples: int = 8) -> tuple[dict[str, float], dict[str, list[float]]]:
    """``score = -Σ (x_i - 0.3)^2`` (maximise); ``per_example`` scores example ``j`` as
    ``1 - |x_{j mod d} - 0.3|`` so different genomes are good at different examples."""
    if recipe.get("die"):
        os._exit(1)
    if recipe.get("sticky"):
        _poisoned.append(str(recipe["sticky"]))
    if _poisoned:
        raise RuntimeError(_poisoned[0])
    if recipe.get("exit") is not None:
        raise SystemExit(recipe["exit"])
    if recipe.get("interrupt"):
        raise KeyboardInterrupt
    if recipe.get("die_once"):
        path = recipe["die_once"]
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)
    if recipe.get("stuck"):
        import signal

        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(float(recipe["stuck"]))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    if recipe.get("sleep"):
        time.sleep(float(recipe["sleep"]))
    if recipe.get("raise"):
        raise RuntimeError(str(recipe["raise"]))
    x = np.asarray(recipe.get("genome", []), dtype=np.float64)
    score = float(-np.sum((x - SPHERE_TARGET) ** 2))
    if recipe.get("nan"):
        score = float("nan")
    if x.size:
        per = [float(1.0 - abs(x[j % x.size] - SPHERE_TARGET)) for j in range(n_examples)]
    else:
        per = [0.0] * n_examples
    return {"score": score}, {"sphere": per}


def uneven_durations(n: int, seed: int, low: float = 0.05, high: float = 0.5, tail: float = 0.2) -> np.ndarray:
    """``n`` evaluation times in ``[low, high]``, a heavy-tailed mix: with probability
    ``1 - tail`` uniform on the lowest fifth of the range, else uniform on its upper half — most
    evaluations are quick, a few take several times as long (like early-stopped vs full fitness
    runs, or short vs long generations)."""
    rng = np.random.default_rng(seed)
    span = high - low
    fast = rng.uniform(low, low + 0.2 * span, size=n)
    slow = rng.uniform(low + 0.5 * span, high, size=n)
    return np.where(rng.random(n) < tail, slow, fast)
