"""Scheduler behaviour on a simulated-clock backend (exact timelines), the in-process backend
(determinism, failures, resume from known results) and the outcome conversions."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
from collections import deque
from contextlib import closing

import numpy as np
import pytest

from evomerge.drivers.base import Candidate, Outcome
from evomerge.errors import ConfigError, RunDirError
from evomerge.evaluator import EvalRequest, EvalResult, FunctionWorkerSpec, InProcessBackend
from evomerge.evaluator.synthetic import sphere, uneven_durations
from evomerge.objectives import Objectives
from evomerge.scheduler import (
    Budget,
    Evaluated,
    KnownResult,
    PerExampleLayout,
    Replay,
    ResumePoint,
    Scheduler,
    Told,
)
from evomerge.scheduler.outcome import to_outcome

SPHERE = FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere")
SPEC = Objectives([("score", "maximize", 1.0)])


# ---------------------------------------------------------------------------------------------
# Fakes
# ---------------------------------------------------------------------------------------------


class SteadyDriver:
    """Steady-state: each genome is the best genome so far plus seeded noise, so what it proposes
    depends on everything it was told (a resumed run only matches if the tells match)."""

    generational = False

    def __init__(self, dim=3, seed=0, n_objectives=1, limit=None):
        self.n_objectives = n_objectives
        self.dim, self.limit = dim, limit
        self.rng = np.random.default_rng(seed)
        self.next_id = 0
        self.best = (np.full(dim, 0.5), -np.inf)
        self.asks: list[int] = []
        self.told: list[tuple[int, Outcome]] = []

    def ask(self, n):
        self.asks.append(n)
        if self.limit is not None:
            n = min(n, self.limit - self.next_id)
        out = []
        for _ in range(max(n, 0)):
            genome = np.clip(self.best[0] + self.rng.normal(0, 0.1, self.dim), 0, 1)
            out.append(Candidate(self.next_id, genome))
            self.next_id += 1
        return out

    def tell(self, candidates, outcomes):
        for c, o in zip(candidates, outcomes):
            assert c.id == o.candidate_id
            self.told.append((c.id, o))
            if not o.failed and o.values[0] > self.best[1]:
                self.best = (np.asarray(c.genome), float(o.values[0]))

    def state_dict(self):
        return copy.deepcopy({"rng": self.rng.bit_generator.state, "next_id": self.next_id, "best": self.best})

    def load_state_dict(self, state):
        state = copy.deepcopy(state)
        self.rng.bit_generator.state = state["rng"]
        self.next_id, self.best = state["next_id"], state["best"]


class GenDriver:
    """Generational: hands out its generation of ``pop`` (in pieces if asked for fewer), returns
    [] while it is outstanding, and insists on being told the whole generation in order."""

    generational = True
    n_objectives = 1

    def __init__(self, pop=5, dim=2, seed=0):
        self.pop, self.dim = pop, dim
        self.rng = np.random.default_rng(seed)
        self.next_id = 0
        self.generation: list[Candidate] = []
        self.handed = 0
        self.tells: list[list[int]] = []
        self.ask_log: list[tuple[int, int]] = []  # (n asked, n returned)

    def ask(self, n):
        if not self.generation:
            self.generation = [Candidate(self.next_id + i, self.rng.random(self.dim)) for i in range(self.pop)]
            self.next_id += self.pop
            self.handed = 0
        out = self.generation[self.handed : self.handed + n]
        self.handed += len(out)
        self.ask_log.append((n, len(out)))
        return out

    def tell(self, candidates, outcomes):
        assert [c.id for c in candidates] == [c.id for c in self.generation], "must tell the whole generation in order"
        assert [o.candidate_id for o in outcomes] == [c.id for c in candidates]
        self.tells.append([c.id for c in candidates])
        self.generation = []

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class SimBackend:
    """``num_workers`` workers on a virtual clock: a request takes ``recipe["sleep"]`` virtual
    seconds; ``wait`` jumps to the next completion. Records every interval and submit time."""

    def __init__(self, num_workers):
        self.num_workers = num_workers
        self.now = 0.0
        self.queue: deque[EvalRequest] = deque()
        self.running: dict[int, tuple[EvalRequest, float, float]] = {}
        self.intervals: list[tuple[int, int, float, float]] = []  # worker, id, start, end
        self.submitted: dict[int, float] = {}
        self.max_running = 0

    def submit(self, request):
        self.submitted[request.candidate_id] = self.now
        self.queue.append(request)
        self._dispatch()

    def _dispatch(self):
        for w in range(self.num_workers):
            if w not in self.running and self.queue:
                req = self.queue.popleft()
                self.running[w] = (req, self.now, self.now + float(req.recipe["sleep"]))
        self.max_running = max(self.max_running, len(self.running))

    def wait(self, timeout=None):
        if not self.running:
            return []
        self.now = min(end for _, _, end in self.running.values())
        results = []
        for w in sorted(self.running):
            req, start, end = self.running[w]
            if end == self.now:
                del self.running[w]
                self.intervals.append((w, req.candidate_id, start, end))
                recipe = {k: v for k, v in req.recipe.items() if k != "sleep"}
                objectives, per = sphere(recipe)
                results.append(
                    EvalResult(req.candidate_id, "ok", objectives, per, eval_seconds=end - start, worker=f"sim-{w}")
                )
        self._dispatch()
        return results

    def pending(self):
        return len(self.queue) + len(self.running)

    def cancel_queued(self):
        out = list(self.queue)
        self.queue.clear()
        return out

    def close(self):
        pass


def timed_recipe(durations):
    return lambda c: {"genome": c.genome.tolist(), "sleep": float(durations[c.id])}


def consume(sched, on_evaluated=None, on_told=None, **kw):
    """Read the scheduler's events as a run does; returns its summary."""
    with closing(sched.events(**kw)) as events:
        for event in events:
            if isinstance(event, Evaluated) and on_evaluated is not None:
                on_evaluated(event)
            elif isinstance(event, Told) and on_told is not None:
                on_told(event)
    return sched.summary()


def replay_of(scored):
    """What a resume reads back from the log (JSON): each result with its genome and ``asked``."""
    return Replay(
        KnownResult(EvalResult.from_json(json.loads(json.dumps(s.result.to_json()))), s.genome.copy(), s.proposed)
        for s in scored
    )


def key(s):
    """A logged result, comparable across runs."""
    return (s.result.candidate_id, s.genome.tolist(), s.result.objectives, s.proposed)


# ---------------------------------------------------------------------------------------------
# (1) steady-state keeps every worker busy; (2) generational gets whole generations in order
# ---------------------------------------------------------------------------------------------


def test_steady_state_keeps_every_worker_busy_until_the_budget_is_spent():
    durations = uneven_durations(40, seed=1)
    backend, driver = SimBackend(3), SteadyDriver()
    summary = Scheduler(driver, backend, SPEC, budget=Budget(max_evals=40), to_recipe=timed_recipe(durations)).run()

    assert summary.evaluated == 40 and summary.told == 40 and summary.stop_reason == "max_evals"
    # every request started the instant it was submitted: nothing ever waited for a worker
    starts = {cid: start for _, cid, start, _ in backend.intervals}
    assert all(starts[cid] == t for cid, t in backend.submitted.items())
    # until the last submit, all 3 workers were busy all the time: no gap on any worker
    last_submit = max(backend.submitted.values())
    for w in range(3):
        mine = sorted((s, e) for ww, _, s, e in backend.intervals if ww == w)
        assert mine[0][0] == 0.0
        for (_, e1), (s2, _) in zip(mine, mine[1:]):
            if s2 <= last_submit:
                assert s2 == e1, f"worker {w} idle from {e1} to {s2}"
    # after the first fill, the scheduler asked for exactly one candidate per freed worker
    assert driver.asks[0] == 3 and set(driver.asks[1:]) == {1}
    assert backend.max_running == 3


def test_generational_driver_is_told_whole_generations_in_ask_order():
    durations = uneven_durations(15, seed=2)
    backend, driver = SimBackend(3), GenDriver(pop=5)
    results, tells = [], []
    sched = Scheduler(driver, backend, SPEC, budget=Budget(max_evals=15), to_recipe=timed_recipe(durations))
    summary = consume(sched, lambda e: results.append(e.candidate.id), lambda e: tells.append(e))

    assert driver.tells == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]
    assert [(list(t.candidate_ids), t.told_total) for t in tells] == [
        (ids, 5 * (g + 1)) for g, ids in enumerate(driver.tells)
    ]
    assert sorted(results) == list(range(15)) and summary.told == 15 and summary.untold == []
    # a generation was submitted as a whole the moment it was asked, and only after the previous
    # one's last result: generation g+1 starts exactly when generation g's last evaluation ends
    for g in range(3):
        ids = range(5 * g, 5 * g + 5)
        assert len({backend.submitted[i] for i in ids}) == 1
        if g:
            prev_end = max(e for _, cid, _, e in backend.intervals if cid in range(5 * g - 5, 5 * g))
            assert backend.submitted[5 * g] == prev_end
    # while a generation still had queued work, no worker was idle
    for g in range(3):
        gen = [(w, s, e) for w, cid, s, e in backend.intervals if 5 * g <= cid < 5 * g + 5]
        last_start = max(s for _, s, _ in gen)
        for w in range(3):
            mine = sorted((s, e) for ww, s, e in gen if ww == w)
            for (_, e1), (s2, _) in zip(mine, mine[1:]):
                assert s2 == e1 or s2 > last_start
    assert [got for _, got in driver.ask_log] == [5, 5, 5]  # whole generations, then the budget ends it
    assert summary.stop_reason == "max_evals"


def test_partial_last_generation_is_evaluated_and_logged_but_not_told():
    backend, driver = SimBackend(2), GenDriver(pop=4)
    logged = []
    sched = Scheduler(driver, backend, SPEC, budget=Budget(max_evals=6), to_recipe=timed_recipe([0.1] * 8))
    summary = consume(sched, lambda e: logged.append(e.candidate.id))
    assert driver.tells == [[0, 1, 2, 3]]
    assert sorted(logged) == [0, 1, 2, 3, 4, 5]
    assert sorted(summary.untold) == [4, 5]
    assert sorted(summary.dropped) == [6, 7]  # the rest of the generation is beyond the budget


def test_stop_drops_queued_requests_and_drains_running_ones():
    backend, driver = SimBackend(2), GenDriver(pop=6)
    logged = []

    def on_evaluated(e):
        logged.append(e.candidate.id)
        if len(logged) == 1:
            scheduler.stop()

    durations = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3]
    scheduler = Scheduler(driver, backend, SPEC, budget=Budget(max_evals=100), to_recipe=timed_recipe(durations))
    summary = consume(scheduler, on_evaluated)
    # 0 finished first (stop); 1 was running and 2 had just started on 0's worker: both drained;
    # 3..5 were still queued and are dropped
    assert logged == [0, 1, 2]
    assert summary.stop_reason == "stopped"
    assert sorted(summary.dropped) == [3, 4, 5]
    assert driver.tells == []  # the generation never completed
    assert sorted(summary.untold) == sorted(logged)


def test_each_event_comes_before_the_tell_and_the_result_is_left_as_the_worker_made_it():
    """Evaluated is yielded before the driver hears of the result; Told after. Scored wraps the
    worker's result (genome, asks so far, the driver's outcome, the request's recipe)."""
    driver, seen, returned = SteadyDriver(seed=4), [], []

    class Keeping(InProcessBackend):
        def wait(self, timeout=None):
            out = super().wait(timeout)
            returned.extend(out)
            return out

    def on_evaluated(e):
        assert e.candidate.id not in [i for i, _ in driver.told]
        s = e.scored
        assert s.result is returned[-1]
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.result.objectives = {}
        assert s.genome.tolist() == e.candidate.genome.tolist() == s.recipe["genome"]
        assert s.outcome.values.tolist() == [s.result.objectives["score"]]
        seen.append(("evaluated", e.candidate.id, s.proposed))

    def on_told(e):
        assert list(e.candidate_ids) == [i for i, _ in driver.told][-len(e.candidate_ids) :]
        seen.append(("told", e.candidate_ids, e.told_total))

    consume(Scheduler(driver, Keeping(SPHERE, num_workers=2), SPEC, budget=Budget(max_evals=4)), on_evaluated, on_told)
    # two slots: 0 and 1 asked first; each result is followed by its tell and one more ask
    assert seen == [
        ("evaluated", 0, 2),
        ("told", (0,), 1),
        ("evaluated", 1, 3),
        ("told", (1,), 2),
        ("evaluated", 2, 4),
        ("told", (2,), 3),
        ("evaluated", 3, 4),
        ("told", (3,), 4),
    ]


def test_must_beat_is_the_best_score_told_so_far():
    """With early stopping each request carries the best scalarised score among the results told
    before it was submitted (none before the first tell); a resumed scheduler continues from the
    incumbent it is given; without early stopping no bar is sent."""
    two = Objectives([("score", "maximize", 2.0)])
    driver, scores, sent = SteadyDriver(seed=2), {}, []

    class Recording(InProcessBackend):
        def submit(self, request):
            sent.append((request.candidate_id, request.must_beat, [i for i, _ in driver.told]))
            super().submit(request)

    def on_evaluated(e):
        scores[e.candidate.id] = 2.0 * e.scored.result.objectives["score"]

    sched = Scheduler(driver, Recording(SPHERE, num_workers=3), two, budget=Budget(max_evals=10), early_stopping=True)
    consume(sched, on_evaluated)
    assert len(sent) == 10 and sent[0][1] is None
    for cid, bar, told in sent:
        assert bar == max((scores[i] for i in told), default=None), cid
    assert len({bar for _, bar, _ in sent}) >= 3  # none, then a bar that rose during the run

    sent.clear()
    driver = SteadyDriver(seed=2)
    resume = ResumePoint(incumbent=-5.0)
    Scheduler(driver, Recording(SPHERE), two, budget=Budget(max_evals=2), early_stopping=True, resume=resume).run()
    assert sent[0][:2] == (0, -5.0)  # the first score (about -0.1) beats it for the second
    assert sent[1][1] == max(-5.0, scores_of_first(driver))

    sent.clear()
    driver = SteadyDriver(seed=2)
    Scheduler(driver, Recording(SPHERE), two, budget=Budget(max_evals=3)).run()
    assert [bar for _, bar, _ in sent] == [None, None, None]


def scores_of_first(driver):
    """2 × the score the driver was told first (the bar objective has weight 2)."""
    return 2.0 * float(driver.told[0][1].values[0])


# ---------------------------------------------------------------------------------------------
# (3) failures; determinism of the in-process backend
# ---------------------------------------------------------------------------------------------


def run_inprocess(driver, max_evals, to_recipe=None, known=(), on_told=None, *, resume=None, **kw):
    backend = InProcessBackend(SPHERE)
    log = []
    resume = resume or ResumePoint()
    resume.replay = replay_of(known)
    sched = Scheduler(
        driver, backend, SPEC, budget=Budget(max_evals=max_evals), to_recipe=to_recipe, resume=resume, **kw
    )
    summary = consume(sched, lambda e: log.append(e.scored), on_told)
    return log, summary


def test_failing_candidate_is_logged_and_told_as_failed_and_the_run_continues():
    def to_recipe(c):
        r = {"genome": c.genome.tolist()}
        if c.id == 3:
            r["raise"] = "simulated CUDA out of memory"
        if c.id == 5:
            r["nan"] = True
        return r

    driver = SteadyDriver()
    log, summary = run_inprocess(driver, 8, to_recipe)
    assert [s.result.candidate_id for s in log] == list(range(8))
    assert summary.failed == 2 and summary.told == 8
    by_id = {s.result.candidate_id: s.result for s in log}
    assert by_id[3].status == "failed" and by_id[3].error_line == "RuntimeError: simulated CUDA out of memory"
    assert "Traceback" in by_id[3].error
    assert by_id[5].status == "failed" and "is not finite" in by_id[5].error_line
    told = dict(driver.told)
    assert told[3].failed and told[3].error == "RuntimeError: simulated CUDA out of memory"
    assert told[5].failed and not told[4].failed
    assert np.isneginf(told[3].values).all()


def test_inprocess_runs_are_deterministic_and_genomes_are_logged():
    log_a, _ = run_inprocess(SteadyDriver(seed=7), 12)
    log_b, _ = run_inprocess(SteadyDriver(seed=7), 12)
    assert [(*key(s), s.result.per_example) for s in log_a] == [(*key(s), s.result.per_example) for s in log_b]
    assert all(s.result.worker == "inprocess" for s in log_a)


# ---------------------------------------------------------------------------------------------
# (5) known results short-circuit evaluation: a resumed run equals an uninterrupted one
# ---------------------------------------------------------------------------------------------


def test_resume_from_checkpoint_and_log_reproduces_the_uninterrupted_run():
    full_log, _ = run_inprocess(SteadyDriver(seed=3), 20)

    # A first run checkpoints the driver after 8 tells and "crashes" after 13 logged results.
    driver = SteadyDriver(seed=3)
    checkpoint = {}

    def on_told(e):
        if e.told_total == 8:
            checkpoint["state"] = driver.state_dict()

    partial_log = []

    class Crash(Exception):
        pass

    def on_evaluated(e):
        partial_log.append(e.scored)
        if len(partial_log) == 13:
            raise Crash

    backend = InProcessBackend(SPHERE)
    with pytest.raises(Crash):
        consume(Scheduler(driver, backend, SPEC, budget=Budget(max_evals=20)), on_evaluated, on_told)

    # Resume: fresh driver from the checkpoint; the log's results; budget minus the 8 told.
    resumed = SteadyDriver(seed=3)
    resumed.load_state_dict(checkpoint["state"])
    new_log, summary = run_inprocess(resumed, 20, known=partial_log[8:], resume=ResumePoint(told_before=8))
    evaluated = [s.result.candidate_id for s in new_log]
    assert evaluated == list(range(13, 20))  # 8..12 came from the log, none evaluated twice
    assert summary.reused == 5 and summary.evaluated == 7
    assert [key(s) for s in partial_log + new_log] == [key(s) for s in full_log]


class PendingSteadyDriver(SteadyDriver):
    """SteadyDriver that, like every real driver, keeps its asked-but-untold candidates pending in
    its state (a restored one never proposes them again) and refuses unknown or repeated tells."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.pending: set[int] = set()

    def ask(self, n):
        out = super().ask(n)
        self.pending.update(c.id for c in out)
        return out

    def tell(self, candidates, outcomes):
        for c in candidates:
            assert c.id in self.pending, f"candidate {c.id} told but not pending"
            self.pending.remove(c.id)
        super().tell(candidates, outcomes)

    def state_dict(self):
        return {**super().state_dict(), "pending": sorted(self.pending)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.pending = set(state["pending"])


def interrupted_then_resumed(make_backend, *, total, ckpt_at, crash_after, seed=3, to_recipe=None, bar=False):
    """Run until ``crash_after`` results are logged, with a checkpoint (driver state + in-flight
    candidates + incumbent) taken after ``ckpt_at`` tells; resume from it with the log's later
    records. ``crash_after=None``: crash right after writing the checkpoint. ``bar``: early
    stopping on (each request carries ``must_beat``).
    Returns (partial log, resumed log, resumed summary, in-flight ids at the checkpoint, driver)."""
    driver = PendingSteadyDriver(seed=seed)
    checkpoint = {}

    class Crash(Exception):
        pass

    partial = []

    def on_told(e):
        if e.told_total == ckpt_at:
            checkpoint["driver"] = driver.state_dict()
            checkpoint["in_flight"] = [f.to_state() for f in sched.in_flight()]
            told = {i for i, _ in driver.told}
            scores = [SPEC.scalar(s.result.objectives) for s in partial if s.result.candidate_id in told]
            checkpoint["incumbent"] = max(scores, default=None)
            if crash_after is None:
                raise Crash

    def on_evaluated(e):
        partial.append(e.scored)
        if len(partial) == crash_after:
            raise Crash

    sched = Scheduler(
        driver, make_backend(), SPEC, budget=Budget(max_evals=total), to_recipe=to_recipe, early_stopping=bar
    )
    with pytest.raises(Crash):
        consume(sched, on_evaluated, on_told)

    resumed = PendingSteadyDriver(seed=seed)
    resumed.load_state_dict(checkpoint["driver"])
    # what a resume reads back: the checkpoint (pickled) and the log's records after it (JSON)
    resume = ResumePoint(
        told_before=ckpt_at,
        in_flight=json.loads(json.dumps(checkpoint["in_flight"])),
        replay=replay_of(partial[ckpt_at:]),
        incumbent=checkpoint["incumbent"],
    )
    new_log = []
    sched = Scheduler(
        resumed,
        make_backend(),
        SPEC,
        budget=Budget(max_evals=total),
        to_recipe=to_recipe,
        early_stopping=bar,
        resume=resume,
    )
    summary = consume(sched, lambda e: new_log.append(e.scored))
    return partial, new_log, summary, [f["id"] for f in checkpoint["in_flight"]], resumed


def test_resume_with_candidates_in_flight_on_several_workers_equals_the_uninterrupted_run():
    """Three in-process slots: when the checkpoint is written two candidates are still running.
    The restored driver holds them as pending and never proposes them again; the scheduler takes
    them back from the checkpoint. The finished log equals the uninterrupted run's."""
    make = lambda: InProcessBackend(SPHERE, num_workers=3)  # noqa: E731
    full_driver = PendingSteadyDriver(seed=3)
    full = []
    consume(Scheduler(full_driver, make(), SPEC, budget=Budget(max_evals=20)), lambda e: full.append(e.scored))
    assert full_driver.asks[:2] == [3, 1]  # three outstanding at a time

    partial, new_log, summary, in_flight, resumed = interrupted_then_resumed(make, total=20, ckpt_at=8, crash_after=13)
    assert in_flight == [8, 9]  # told 0..7; 8 and 9 were running, 10 not asked yet
    # 8..12 came from the log (8 and 9 taken back from the checkpoint), 13.. were evaluated
    assert [s.result.candidate_id for s in new_log] == list(range(13, 20))
    assert summary.reused == 5 and summary.evaluated == 7 and summary.unreplayed == []
    assert [key(s) for s in partial + new_log] == [key(s) for s in full]
    assert resumed.pending == set() and [i for i, _ in resumed.told] == list(range(8, 20))


def test_resume_with_in_flight_candidates_not_yet_logged():
    """Crash right after the checkpoint: the in-flight candidates have no result in the log and
    are evaluated (once) after the resume, with the must_beat they were first submitted with."""
    sent = []

    class Recording(InProcessBackend):
        def submit(self, request):
            sent.append((request.candidate_id, request.must_beat))
            super().submit(request)

    make = lambda: Recording(SPHERE, num_workers=4)  # noqa: E731
    full_driver, full = PendingSteadyDriver(seed=5), []
    sched = Scheduler(full_driver, make(), SPEC, budget=Budget(max_evals=14), early_stopping=True)
    consume(sched, lambda e: full.append(e.scored))
    first = dict(sent)
    sent.clear()
    partial, new_log, summary, in_flight, resumed = interrupted_then_resumed(
        make, total=14, ckpt_at=6, crash_after=None, seed=5, bar=True
    )
    assert in_flight == [6, 7, 8]
    # the uninterrupted run sent 6, 7, 8 with the best score told before each was asked
    told_scores = [SPEC.scalar(s.result.objectives) for s in full]
    assert [first[i] for i in (6, 7, 8)] == [max(told_scores[:k]) for k in (3, 4, 5)]
    resent = [(cid, bar) for cid, bar in sent if cid in (6, 7, 8)][-3:]
    assert resent == [(i, first[i]) for i in (6, 7, 8)]
    assert dict(sent) == first
    ids = [s.result.candidate_id for s in partial + new_log]
    assert ids == list(range(14)) and summary.reused == 0
    assert [key(s) for s in partial + new_log] == [key(s) for s in full]
    assert resumed.pending == set()


def test_resume_replays_the_logged_interleaving_of_asks_and_tells_on_an_unordered_pool():
    """A pool that returns several results at once (ties on a virtual clock) tells them together
    and then asks for several candidates: a proposal depends on how many results were told before
    it. The resumed run re-proposes exactly the logged candidates — although the fresh pool would
    finish the taken-back candidates in another order — because each record says how many
    candidates had been asked when it arrived."""
    durations = np.random.default_rng(4).choice([0.1, 0.2, 0.3], size=40)
    make = lambda: SimBackend(3)  # noqa: E731
    partial, new_log, summary, in_flight, resumed = interrupted_then_resumed(
        make, total=30, ckpt_at=7, crash_after=19, seed=11, to_recipe=timed_recipe(durations)
    )
    assert in_flight, "the checkpoint must have candidates in flight"
    asked = [s.proposed for s in partial]
    assert any(a == b for a, b in zip(asked, asked[1:])), "no tie happened"
    assert summary.reused == 12 and summary.unreplayed == []
    ids = [s.result.candidate_id for s in partial + new_log]
    assert sorted(ids) == list(range(30)) and len(set(ids)) == 30
    # the resumed driver was told the logged results in log order, then the new ones
    assert [i for i, _ in resumed.told][:12] == [s.result.candidate_id for s in partial[7:]]
    assert resumed.pending == set()


def test_known_result_with_a_different_genome_is_a_clear_error():
    log, _ = run_inprocess(SteadyDriver(seed=1), 3)
    with pytest.raises(
        RunDirError,
        match=r"^candidate 0: the resumed driver proposed a different genome than "
        r"evaluations.jsonl holds \(max \|difference\| ",
    ):
        run_inprocess(SteadyDriver(seed=2), 3, known=log)


# ---------------------------------------------------------------------------------------------
# Budgets, conversions, signals
# ---------------------------------------------------------------------------------------------


def test_target_stops_asking_and_driver_exhaustion_ends_the_run():
    # genome all 0.3 scores 0 — the maximum — which meets a target of -1e-9
    to_recipe = lambda c: {"genome": [0.3, 0.3] if c.id == 4 else [0.0, 0.0]}  # noqa: E731
    _, summary = run_inprocess(SteadyDriver(dim=2), 50, to_recipe=to_recipe)
    assert summary.evaluated == 50  # no target: the whole budget
    budget = Budget(max_evals=50, target=SPEC.target({"score": -1e-9}))
    s = Scheduler(SteadyDriver(dim=2), InProcessBackend(SPHERE), SPEC, budget=budget, to_recipe=to_recipe).run()
    assert s.stop_reason == "target" and s.evaluated == 5

    log, summary = run_inprocess(SteadyDriver(limit=6), None)
    assert summary.stop_reason == "driver_exhausted" and len(log) == 6


def test_time_limit_stops_asking():
    s = Scheduler(
        SteadyDriver(),
        InProcessBackend(SPHERE),
        SPEC,
        budget=Budget(time_limit=0.25),
        to_recipe=lambda c: {"genome": c.genome.tolist(), "sleep": 0.05},
    ).run()
    assert s.stop_reason == "time_limit"
    assert 2 <= s.evaluated <= 7
    assert s.utilization > 0.5


def test_objective_conversion_directions_weights_and_per_example_alignment():
    spec = Objectives([("acc", "maximize", 2.0), ("loss", "minimize", 0.5)])
    layout = PerExampleLayout(["b", "a"], {"a": 3})
    r = EvalResult(0, "ok", {"acc": 0.8, "loss": 1.5}, {"a": [1, 0], "b": [0.5]})
    o2 = to_outcome(r, spec, 2, layout)
    np.testing.assert_allclose(o2.values, [0.8, -1.5])
    np.testing.assert_allclose(o2.per_example, [0.5, 1, 0, 0])  # b, then a padded to 3
    one = to_outcome(r, spec, 1, PerExampleLayout())
    np.testing.assert_allclose(one.values, [2.0 * 0.8 - 0.5 * 1.5])
    np.testing.assert_allclose(one.per_example, [1, 0, 0.5])  # sorted task order
    missing = to_outcome(EvalResult(1, "ok", {"acc": 1.0}), spec, 2, layout)
    assert missing.failed and missing.error == "result has no objective loss (got acc)"
    failed = to_outcome(EvalResult(2, "failed", error="boom\ntrace"), spec, 2, layout)
    assert failed.failed and failed.error == "boom" and np.isneginf(failed.values).all()

    backend = InProcessBackend(SPHERE)
    with pytest.raises(ConfigError, match=r"^driver optimises 2 objectives but 3 are configured \(a, b, c\)$"):
        Scheduler(
            SteadyDriver(n_objectives=2),
            backend,
            Objectives([("a", "maximize", 1), ("b", "maximize", 1), ("c", "minimize", 1)]),
        )


def test_first_ctrl_c_finishes_gracefully_second_abandons():
    driver = SteadyDriver()
    seen = []

    def on_evaluated(e):
        seen.append(e.candidate.id)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    sched = Scheduler(driver, InProcessBackend(SPHERE), SPEC, budget=Budget(max_evals=50))
    summary = consume(sched, on_evaluated)
    assert summary.stop_reason == "interrupted" and seen == [0, 1, 2] and summary.told == 3

    seen.clear()

    def on_evaluated_twice(e):
        seen.append(e.candidate.id)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        consume(
            Scheduler(SteadyDriver(), InProcessBackend(SPHERE), SPEC, budget=Budget(max_evals=50)), on_evaluated_twice
        )
    assert signal.getsignal(signal.SIGINT) is before


def test_cmaes_stopped_mid_generation_resumes_that_generation():
    """A stop (time limit, Ctrl-C) in the middle of a CMA-ES generation: the checkpoint written at
    the end holds a driver that has handed out the whole generation, so it would only ever answer
    ``ask`` with []. The in-flight generation in the checkpoint is evaluated (its logged members
    taken from the log) and told whole; the finished log equals the uninterrupted run's."""
    from types import SimpleNamespace

    from evomerge.drivers import make_driver

    box = SimpleNamespace(dim=3, lower=np.zeros(3), upper=np.ones(3), x0=np.full(3, 0.5), sigma0=0.2)
    make = lambda: make_driver("cmaes", box, n_objectives=1, seed=2, population_size=4)  # noqa: E731
    full, _ = run_inprocess(make(), 12)

    driver, partial = make(), []

    def on_evaluated(e):
        partial.append(e.scored)
        if len(partial) == 6:
            sched.stop()

    sched = Scheduler(driver, InProcessBackend(SPHERE), SPEC, budget=Budget(max_evals=12))
    summary = consume(sched, on_evaluated)
    assert summary.stop_reason == "stopped" and summary.told == 4 and sorted(summary.dropped) == [6, 7]
    state = copy.deepcopy(driver.state_dict())
    in_flight = [f.to_state() for f in sched.in_flight()]
    assert [f["id"] for f in in_flight] == [4, 5, 6, 7]  # 4, 5 evaluated (untold), 6, 7 cancelled in the queue

    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.ask(4) == []  # what the driver alone would do: the generation is out
    new_log, summary = run_inprocess(
        resumed, 12, known=partial[4:], resume=ResumePoint(told_before=4, in_flight=in_flight)
    )
    assert [s.result.candidate_id for s in new_log] == [6, 7, 8, 9, 10, 11] and summary.reused == 2
    assert [key(s) for s in partial + new_log] == [key(s) for s in full]
    assert resumed.generation == 3
