"""What escapes candidate code is a failed candidate, not the end of the run: ``SystemExit`` and a
``KeyboardInterrupt`` a library raised itself; only the user's own Ctrl-C (the handler counted a
press) still stops the run. Errors that poison a CUDA context are recognised by their message."""

import os
import signal

import numpy as np
import pytest

from evomerge.evaluator import EvalRequest, FunctionWorkerSpec, InProcessBackend, sigint
from evomerge.evaluator.worker import Worker, is_sticky_error
from evomerge.objectives import Objectives
from evomerge.scheduler import Budget, Evaluated, Scheduler

SPHERE = FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere")


def _eval(recipe):
    return Worker(SPHERE, worker_id="w").evaluate(EvalRequest(0, {"genome": [0.3], **recipe}))


@pytest.mark.parametrize(
    "recipe, error",
    [({"exit": 3}, "SystemExit: 3"), ({"exit": 0}, "SystemExit: 0"), ({"raise": "boom"}, "RuntimeError: boom")],
)
def test_system_exit_and_errors_are_failed_candidates(recipe, error):
    result = _eval(recipe)
    assert result.status == "failed" and result.error_line == error
    assert _eval({}).ok  # the worker goes on


def test_a_keyboard_interrupt_a_library_raised_is_a_failed_candidate_while_the_run_watches():
    with sigint.watch():
        result = _eval({"interrupt": True})
    assert result.status == "failed" and result.error_line == "KeyboardInterrupt"


def test_a_keyboard_interrupt_outside_a_run_is_the_users_and_propagates():
    with pytest.raises(KeyboardInterrupt):
        _eval({"interrupt": True})


def test_a_keyboard_interrupt_after_a_real_press_propagates():
    class PressThenRaise:
        def build(self):
            def evaluate(request):
                sigint.press()  # what the run's SIGINT handler does when the user presses Ctrl-C
                raise KeyboardInterrupt

            return evaluate

    with sigint.watch(), pytest.raises(KeyboardInterrupt):
        Worker(PressThenRaise(), worker_id="w").evaluate(EvalRequest(0, {}))


class _Line:
    generational, n_objectives = False, 1

    def __init__(self, recipes):
        self.recipes, self.next_id, self.told = recipes, 0, []

    def ask(self, n):
        from evomerge.drivers.base import Candidate

        out = []
        while len(out) < n and self.next_id < len(self.recipes):
            out.append(Candidate(self.next_id, np.array([float(self.next_id)])))
            self.next_id += 1
        return out

    def tell(self, candidates, outcomes):
        self.told += [(int(c.id), o.failed) for c, o in zip(candidates, outcomes)]


def test_a_run_passes_candidates_that_exit_or_interrupt():
    recipes = [{}, {"exit": 2}, {"interrupt": True}, {}, {"exit": None}]
    driver = _Line(recipes)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup / in the background
    sched = Scheduler(
        driver,
        InProcessBackend(SPHERE),
        Objectives([("score", "maximize", 1.0)]),
        budget=Budget(max_evals=len(recipes)),
        to_recipe=lambda c: {"genome": [0.3], **recipes[int(c.id)]},
    )
    errors = [e.scored.result.error_line for e in sched.events() if isinstance(e, Evaluated)]
    assert errors == [None, "SystemExit: 2", "KeyboardInterrupt", None, None]
    assert driver.told == [(0, False), (1, True), (2, True), (3, False), (4, False)]
    assert signal.getsignal(signal.SIGINT) is before  # the run's handler is gone
    assert os.getpid()  # still here


@pytest.mark.parametrize(
    "line, sticky",
    [
        ("RuntimeError: CUDA error: an illegal memory access was encountered", True),
        ("RuntimeError: CUDA error: device-side assert triggered", True),
        ("RuntimeError: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm`", True),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", False),
        ("RuntimeError: boom", False),
        (None, False),
    ],
)
def test_sticky_errors_are_recognised_by_their_message(line, sticky):
    assert is_sticky_error(line) is sticky
