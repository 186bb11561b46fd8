"""A stage's driver as a staged run (:mod:`evomerge.runs.stages`) sees it.

:class:`StageDriver` wraps the driver a stage's plan builds and changes three things, nothing in
what the driver itself proposes or learns:

* **ids** — candidate ids continue across the stages of one log: the wrapped driver's ids (from
  0) are shifted by the stage's ``offset`` (1 + the largest id of the earlier stages), and shifted
  back when it is told;
* **meta.stage** — every candidate's ``meta`` names the stage (the report's contract,
  :mod:`evomerge.report.stages`); the wrapped driver never sees the key;
* **the identity start** (``identity``: a genome) — the stage's first candidate is that genome,
  proposed before the wrapped driver's own and never told to it: the data-flow stage of PS+DFS
  starts with model A's identity path (the space's ``x0``), which scores exactly what the PS
  winner scored. For a generational driver it is a generation of its own (the driver's first
  generation is asked once it is told); a steady-state driver's candidates follow it in the same
  ask. Its state (``due`` → ``asked`` → ``told``) is :attr:`StageDriver.identity`, saved in the
  checkpoint's ``stage`` entry, not in the driver's state.

``state_dict()`` / ``load_state_dict()`` are the wrapped driver's, unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from evomerge.drivers.base import Candidate, Outcome
from evomerge.errors import RunDirError

IDENTITY_STATES = ("none", "due", "asked", "told")


class StageDriver:
    def __init__(self, driver: Any, *, stage: str, offset: int = 0, identity: np.ndarray | None = None):
        self.driver = driver
        self.stage = stage
        self.offset = int(offset)
        self.generational = bool(getattr(driver, "generational", False))
        self.n_objectives = int(driver.n_objectives)
        self._identity = None if identity is None else np.array(identity, dtype=float).reshape(-1)
        self.identity = "none" if identity is None else "due"
        self._shift = self.offset + (0 if identity is None else 1)  # the wrapped driver's id 0

    # -- the identity start ---------------------------------------------------------------------
    def restore_identity(self, state: str) -> None:
        """Set the identity start's state from a checkpoint's ``stage`` entry."""
        if state not in IDENTITY_STATES or (state == "none") != (self._identity is None):
            raise RunDirError(
                f"the checkpoint's stage entry has identity {state!r}; stage {self.stage!r} expects "
                f"{'none' if self._identity is None else 'due, asked or told'}"
            )
        self.identity = state

    @property
    def pending_ids(self) -> list[int]:
        inner = getattr(self.driver, "pending_ids", None)
        ids = [] if inner is None else [int(i) + self._shift for i in inner]
        return ([self.offset] if self.identity == "asked" else []) + ids

    # -- the Driver protocol --------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        if self.identity == "due" and n > 0:
            self.identity = "asked"
            out.append(Candidate(self.offset, self._identity.copy(), {"stage": self.stage, "start": "identity"}))
            if self.generational:
                return out  # a generation of its own
            n -= 1
        if self.identity == "asked" and self.generational:
            return out
        if n > 0:
            out += [
                Candidate(c.id + self._shift, c.genome, {**c.meta, "stage": self.stage}) for c in self.driver.ask(n)
            ]
        return out

    def tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        mine_c, mine_o = [], []
        for cand, out in zip(candidates, outcomes, strict=True):
            if int(cand.id) == self.offset and self.identity == "asked":
                self.identity = "told"  # the wrapped driver never proposed it
                continue
            meta = {k: v for k, v in (cand.meta or {}).items() if k != "stage"}
            mine_c.append(Candidate(int(cand.id) - self._shift, cand.genome, meta))
            mine_o.append(replace(out, candidate_id=int(out.candidate_id) - self._shift))
        if mine_c:
            self.driver.tell(mine_c, mine_o)

    def state_dict(self) -> dict[str, Any]:
        return self.driver.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.driver.load_state_dict(state)


__all__ = ["IDENTITY_STATES", "StageDriver"]
