"""The resume replay on its own: log order, the gating of asks, genome checks, the fallback."""

import logging

import numpy as np
import pytest

from evomerge.drivers.base import Candidate
from evomerge.errors import RunDirError
from evomerge.evaluator import EvalResult
from evomerge.scheduler.replay import KnownResult, Replay


def known(cid, proposed, genome=None):
    g = np.full(2, float(cid)) if genome is None else np.asarray(genome, dtype=float)
    return KnownResult(EvalResult(cid, "ok", {"score": -float(cid)}), g, proposed)


def cand(cid):
    return Candidate(cid, np.full(2, float(cid)))


def test_known_results_are_told_in_log_order_whatever_order_they_come_back_in():
    # the log: 5 arrived first, then 3, then 4
    replay = Replay([known(5, 6), known(3, 6), known(4, 7)])
    assert len(replay) == 3 and replay.next() is None
    assert replay.take(cand(4)) and replay.take(cand(3))
    assert not replay.take(cand(9))  # not in the log: the scheduler evaluates it
    assert replay.waiting == 2
    # 5 (the head of the log) has not come back: the earliest one taken goes first
    c, k = replay.next()
    assert (c.id, k.candidate_id) == (3, 3)
    assert replay.take(cand(5))
    assert [replay.next()[0].id, replay.next()[0].id] == [5, 4]
    assert replay.next() is None and len(replay) == 0 and replay.unreplayed == []


def test_ask_limit_follows_the_logged_interleaving_of_asks_and_tells():
    # the head result arrived when 4 candidates had been handed out, the next one at 6
    replay = Replay([known(0, 4), known(1, 6)])
    assert replay.ask_limit(2, free=1, nothing_in_flight=False) == 2  # ask up to 4 first
    assert replay.ask_limit(4, free=3, nothing_in_flight=False) == 0  # then tell 0 before asking
    replay.take(cand(0))
    replay.next()
    assert replay.ask_limit(4, free=1, nothing_in_flight=False) == 2  # the next head: ask to 6
    replay.take(cand(1))
    replay.next()
    assert replay.ask_limit(6, free=3, nothing_in_flight=False) == 3  # replay done: workers decide


def test_ask_limit_without_asked_in_the_log_is_unconstrained():
    replay = Replay([known(0, None)])
    assert replay.ask_limit(0, free=3, nothing_in_flight=True) == 3


def test_a_log_the_driver_cannot_follow_stops_the_gating_with_a_warning(caplog):
    replay = Replay([known(7, 2), known(8, 3)])
    with caplog.at_level(logging.WARNING, logger="evomerge.scheduler.replay"):
        # 2 were handed out, the head's result is due but nothing is in flight to bring it back
        assert replay.ask_limit(2, free=1, nothing_in_flight=True) == 1
    assert "cannot be replayed" in caplog.text
    assert replay.ask_limit(0, free=2, nothing_in_flight=False) == 2  # no longer gated
    assert replay.unreplayed == [7, 8]


def test_a_re_proposed_candidate_with_another_genome_is_refused():
    replay = Replay([known(0, 1, genome=[0.5, 0.25])])
    with pytest.raises(
        RunDirError,
        match=r"^candidate 0: the resumed driver proposed a different genome than evaluations.jsonl holds "
        r"\(max \|difference\| 0.5\); the checkpoint and the log do not belong together$",
    ):
        replay.take(Candidate(0, np.array([0.0, 0.25])))
    with pytest.raises(RunDirError, match=r"\(shape \(2,\) vs \(3,\)\)"):
        replay.take(Candidate(0, np.zeros(3)))
    assert Replay([known(0, 1, genome=[0.5, 0.25])]).take(Candidate(0, np.array([0.5, 0.25])))


def test_a_log_holding_a_candidate_twice_is_refused():
    with pytest.raises(RunDirError, match=r"^the log holds candidate 3 twice after the checkpoint$"):
        Replay([known(3, 1), known(3, 2)])
