"""Run or resume a digits run whose candidate TARGET kills the process (not a test; the poison
tests start it as a subprocess):

    python poison_run.py run|resume CONFIG RUN_DIR exit|stuck TARGET

``exit``: the candidate calls ``os._exit(9)``; ``stuck``: it blocks SIGALRM and sleeps (native code
the worker's time limit cannot interrupt) — the backend's watchdog then ends the process after
``timeout + hard_timeout_grace`` = 1 s.
"""

import os
import signal
import sys
import time

from evomerge.config import load_config
from evomerge.evaluator import Evaluation, InProcessBackend
from evomerge.runs.api import resume, run
from evomerge.runs.digits import digits_evaluator
from evomerge.runs.plan import build_plan


class PoisonSpec:
    def __init__(self, seed: int, mode: str, target: int):
        self.seed, self.mode, self.target = seed, mode, target

    def build(self):
        inner = digits_evaluator(self.seed)

        def evaluate(request):
            if request.candidate_id == self.target:
                if self.mode == "exit":
                    os._exit(9)
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                time.sleep(60)
            objectives, per_example = inner(request.recipe)
            return Evaluation(objectives, per_example)

        return evaluate


def main(action, config, run_dir, mode, target):
    cfg = load_config(config)
    plan = build_plan(cfg, source=config)
    spec = PoisonSpec(cfg.run.seed, mode, int(target))
    plan.make_backend = lambda: InProcessBackend(spec, timeout=0.5, hard_timeout_grace=0.5)
    if action == "run":
        run(cfg, run_dir, config_path=config, progress=False, plan=plan)
    else:
        resume(run_dir, progress=False, plan=plan)


if __name__ == "__main__":
    main(*sys.argv[1:])
