"""A pool of Ray actors, each holding one :class:`~evomerge.evaluator.worker.Worker`.

Each actor reserves ``num_gpus`` and ``num_cpus`` and builds its worker (loads the model pool and
the live model) once, when it starts; from then on it evaluates one request at a time. The pool
keeps a FIFO queue of requests and hands the oldest to whichever actor frees first, so with a
steady supply of requests no actor waits.

Failures, by kind:

* a candidate that raises (OOM, NaN, its own time limit) comes back from the actor as a failed
  :class:`EvalResult` — the actor lives on, nothing is retried (the same candidate would fail
  again);
* an actor that dies (process killed, node lost, ``os._exit``, segfault) is killed for good and
  replaced by a fresh actor in the same slot; the request it was running goes back to the *front*
  of the queue with ``attempt + 1``. After ``max_attempts`` deaths on one candidate the candidate
  is given up as failed (``"worker died N times …"``): a candidate that crashes its process every
  time must not take the run down with it;
* an evaluation running longer than ``timeout + hard_timeout_grace`` seconds (stuck in native
  code, beyond the worker's own ``SIGALRM`` limit) gets its actor replaced and the candidate
  failed as timed out (not retried);
* a worker that cannot even be built (bad model path, incompatible models) is a user error: the
  worker's exception is raised from :meth:`RayPoolBackend.wait` as is; an actor that cannot start
  at all (its spec does not unpickle on that node) raises :class:`EvomergeError` at once — a
  replacement would fail the same way.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evomerge.errors import EvomergeError
from evomerge.evaluator.base import EvalRequest, EvalResult, WorkerSpec
from evomerge.evaluator.ray_connect import connect_ray
from evomerge.evaluator.worker import Worker
from evomerge.validation import parse_options

log = logging.getLogger(__name__)


class _ActorWorker:
    """The body of one actor. Building the worker happens in ``__init__``; an exception there is
    kept and re-raised by every ``evaluate`` so it reaches the driver as an ordinary task error
    (an actor whose constructor raises would look like a dead actor instead)."""

    def __init__(self, spec: WorkerSpec, worker_id: str, timeout: float | None):
        self._error: BaseException | None = None
        self._worker: Worker | None = None
        try:
            self._worker = Worker(spec, worker_id=f"{worker_id}@{socket.gethostname()}", timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - re-raised on first use
            self._error = exc

    def evaluate(self, request: EvalRequest) -> EvalResult:
        if self._error is not None:
            raise self._error
        return self._worker.evaluate(request)

    def pid(self) -> int:
        return os.getpid()


_remote_class = None


def _actor_class():
    global _remote_class
    if _remote_class is None:
        import ray

        _remote_class = ray.remote(_ActorWorker)
    return _remote_class


@dataclass
class _Slot:
    index: int
    actor: Any
    incarnation: int = 0
    request: EvalRequest | None = None
    ref: Any = None
    started: float = 0.0
    ready: Any = None  # ref that resolves once the actor has built its worker
    is_ready: bool = False


class RayOptions(BaseModel):
    """The ``evaluator`` options of ``backend: ray`` (see :class:`RayPoolBackend`)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = None  # None: a private local Ray; "auto", "HOST:PORT", "ray://HOST:PORT"
    num_workers: int | None = Field(default=None, ge=1)  # None: as many as the cluster allows
    num_gpus: float | None = Field(default=None, ge=0)  # per actor; None: 1 when the cluster has GPUs
    num_cpus: float = Field(default=1, ge=0)  # per actor
    max_attempts: int = Field(default=3, ge=1)  # actor deaths one candidate may cause before it fails
    timeout: float | None = Field(default=None, gt=0)  # seconds per evaluation (the worker's limit)
    hard_timeout_grace: float = Field(default=30.0, ge=0)


class RayPoolBackend:
    """``num_workers`` actors; ``submit`` queues, ``wait`` collects whatever finished.

    Options (:class:`RayOptions`, as a model or as keywords): ``address`` is the cluster
    :func:`connect_ray` joins when this process is not connected yet. ``num_gpus``: GPUs per actor
    — ``None`` means 1 when the cluster has GPUs, else 0. ``num_workers``: ``None`` means as many
    actors as the cluster's GPUs (or CPUs, on a CPU-only cluster) allow at ``num_gpus`` /
    ``num_cpus`` each. ``max_attempts``: how many times one candidate may kill its actor before it
    is failed. ``timeout``: seconds per evaluation (the worker's own limit; the pool replaces an
    actor still busy ``hard_timeout_grace`` seconds later). ``actor_options`` (Python only, never
    from a config: a run directory must not install or run anything): passed to ``.options()``
    (e.g. ``{"resources": {...}}``, ``"runtime_env"``).
    """

    Options = RayOptions

    def __init__(
        self,
        spec: WorkerSpec,
        options: RayOptions | Mapping[str, Any] | None = None,
        *,
        actor_options: dict[str, Any] | None = None,
        **option_values: Any,
    ):
        self.options = opts = parse_options(self.Options, {**dict(options or {}), **option_values}, prefix="evaluator.")
        import ray

        if not ray.is_initialized():
            connect_ray(opts.address)
        self._ray = ray
        resources = ray.cluster_resources()
        num_gpus, num_workers, num_cpus = opts.num_gpus, opts.num_workers, opts.num_cpus
        if num_gpus is None:
            num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        if num_workers is None:
            if num_gpus > 0:
                num_workers = int(resources.get("GPU", 0) // num_gpus)
            else:
                num_workers = int(resources.get("CPU", 1) // num_cpus) if num_cpus > 0 else 1
        if num_workers < 1:
            raise EvomergeError(
                f"the Ray cluster has {resources.get('GPU', 0):g} GPUs and {resources.get('CPU', 0):g} CPUs: "
                f"not enough for one actor with num_gpus={num_gpus:g}, num_cpus={num_cpus:g}"
            )
        self.num_workers = int(num_workers)
        self.num_gpus = float(num_gpus)
        self.num_cpus = float(num_cpus)
        self.max_attempts = opts.max_attempts
        self.timeout = opts.timeout
        self.hard_timeout_grace = opts.hard_timeout_grace
        self.deaths = 0  # actors lost (for reports and tests)
        self._spec = spec
        self._options = dict(actor_options or {})
        self._queue: deque[EvalRequest] = deque()
        self._slots = [_Slot(index=i, actor=None) for i in range(self.num_workers)]
        for slot in self._slots:
            self._launch(slot)
        self._closed = False

    # -- actors ---------------------------------------------------------------------------------

    def _start_actor(self, index: int, incarnation: int):
        options = {"num_gpus": self.num_gpus, "num_cpus": self.num_cpus, "max_restarts": 0, "max_task_retries": 0}
        options.update(self._options)
        return _actor_class().options(**options).remote(self._spec, f"ray-{index}.{incarnation}", self.timeout)

    def _launch(self, slot: _Slot) -> None:
        slot.actor = self._start_actor(slot.index, slot.incarnation)
        # the time limit counts from when the worker is built (loading a model can take minutes)
        slot.ready, slot.is_ready = slot.actor.pid.remote(), False
        slot.request = slot.ref = None

    def _replace(self, slot: _Slot) -> None:
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        slot.incarnation += 1
        self._launch(slot)

    def running(self) -> dict[int, Any]:
        """``{candidate_id: actor}`` for the evaluations in flight now."""
        return {slot.request.candidate_id: slot.actor for slot in self._slots if slot.ref is not None}

    # -- protocol -------------------------------------------------------------------------------

    def submit(self, request: EvalRequest) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed RayPoolBackend")
        self._queue.append(request)
        self._dispatch()

    def pending(self) -> int:
        return len(self._queue) + sum(slot.ref is not None for slot in self._slots)

    def cancel_queued(self) -> list[EvalRequest]:
        dropped = list(self._queue)
        self._queue.clear()
        return dropped

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.ref is None:
                slot.request = self._queue.popleft()
                slot.ref = slot.actor.evaluate.remote(slot.request)
                slot.started = time.monotonic()

    def wait(self, timeout: float | None = None) -> list[EvalResult]:
        ray = self._ray
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._dispatch()
            busy = [slot for slot in self._slots if slot.ref is not None]
            if not busy:
                return []
            now = time.monotonic()
            step = None if deadline is None else max(0.0, deadline - now)
            hard = self._hard_limit()
            if hard is not None:
                to_expiry = max(0.0, min(slot.started + hard for slot in busy) - now)
                step = to_expiry if step is None else min(step, to_expiry)
            refs = [slot.ref for slot in busy]
            ready, _ = ray.wait(refs, num_returns=1, timeout=step)
            if ready:  # collect everything else that is done too
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            ready_ids = set(ready)
            results: list[EvalResult] = []
            for slot in busy:
                if slot.ref in ready_ids:
                    result = self._collect(slot)
                    if result is not None:
                        results.append(result)
            results.extend(self._expire_stuck())
            self._dispatch()
            if results:
                return results
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def _hard_limit(self) -> float | None:
        return None if self.timeout is None else self.timeout + self.hard_timeout_grace

    def _collect(self, slot: _Slot) -> EvalResult | None:
        ray = self._ray
        request, ref = slot.request, slot.ref
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if getattr(exc, "actor_init_failed", False):
                # the actor never started (its arguments could not be unpickled on that node,
                # most often): every replacement would fail the same way
                self.close()
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                raise EvomergeError(
                    f"Ray worker ray-{slot.index} could not start: {lines[-1] if lines else type(exc).__name__} "
                    "(evomerge and the evaluate function must be importable on every node; see docs/cluster.md)"
                ) from None
            return self._on_death(slot, request, exc)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            self.close()
            if isinstance(cause, EvomergeError):
                raise cause from None
            raise RuntimeError(f"Ray worker ray-{slot.index} could not be built: {cause!r}") from exc
        slot.request = slot.ref = None
        return result

    def _on_death(self, slot: _Slot, request: EvalRequest, exc: BaseException) -> EvalResult | None:
        self.deaths += 1
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning(
            "Ray worker ray-%d.%d died on candidate %d: %s", slot.index, slot.incarnation, request.candidate_id, reason
        )
        worker = f"ray-{slot.index}.{slot.incarnation}"
        self._replace(slot)
        attempts = request.attempt + 1
        if attempts >= self.max_attempts:
            return EvalResult.failure(
                request,
                f"worker died {attempts} times while evaluating candidate {request.candidate_id}: {reason}",
                worker=worker,
            )
        self._queue.appendleft(
            EvalRequest(request.candidate_id, request.recipe, request.split, request.must_beat, attempts)
        )
        return None

    def _expire_stuck(self) -> list[EvalResult]:
        hard = self._hard_limit()
        if hard is None:
            return []
        out = []
        now = time.monotonic()
        for slot in self._slots:
            if slot.ref is not None and not slot.is_ready:
                done, _ = self._ray.wait([slot.ready], timeout=0)
                slot.is_ready = bool(done)
                slot.started = now  # still building (or just built): its candidate starts now
                continue
            if slot.ref is not None and now - slot.started >= hard:
                request, worker = slot.request, f"ray-{slot.index}.{slot.incarnation}"
                log.warning(
                    "candidate %d ran %.0f s (> %g s): replacing its actor",
                    request.candidate_id,
                    now - slot.started,
                    hard,
                )
                self._replace(slot)
                out.append(
                    EvalResult.failure(
                        request,
                        f"EvaluationTimeout: evaluation exceeded {self.timeout:g} s and did not stop; worker replaced",
                        worker=worker,
                        eval_seconds=now - slot.started,
                    )
                )
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        for slot in self._slots:
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone, or Ray shut down first
                pass
            slot.request = slot.ref = None

    def __enter__(self) -> RayPoolBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
