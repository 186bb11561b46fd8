"""What the generational CMA-ES drivers (``cmaes``, ``catcma``) share: one generation at a time.

A generation is sampled whole (:meth:`GenerationalDriver._sample_generation`, after reseeding, so
that a resumed run samples exactly what an uninterrupted one does), handed out in parts by
``ask``, and told to the optimizer once every member's outcome is in
(:meth:`GenerationalDriver._told_generation`) with failed members ranked last: a failure (flagged,
or non-finite values) gets ``min f − 1`` over the finite members of its generation (0 when all
failed), so it ranks last without a huge number distorting a stopping test on the spread of f.
The generation in progress is part of ``state_dict`` (:meth:`_generation_state`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from evomerge.drivers.base import Candidate, DriverBase, Outcome, outcome_failed
from evomerge.state import Reader, StateError, as_float, as_int, kind


class GenerationalDriver(DriverBase):
    """Base of a driver that tells its optimizer whole generations; subclasses sample and tell."""

    generational = True
    label: ClassVar[str] = "optimizer"  # the optimizer's name in messages

    def _init_generation(self) -> None:
        self._generation = 0  # counts generations (over all restarts, for IPOP)
        self._members: list[np.ndarray] = []  # the whole current generation's genomes, sampling order
        self._buffer: list[int] = []  # slots of this generation not asked yet
        self._id_to_slot: dict[int, int] = {}
        self._values: dict[int, float | None] = {}  # slot -> scalarised value (None = failed)

    # -- hooks ---------------------------------------------------------------------------------
    def _sample_generation(self) -> list[np.ndarray]:
        """The genomes of generation ``self._generation``, in sampling order."""
        raise NotImplementedError

    def _told_generation(self, f: list[float]) -> None:
        """Tell the optimizer the generation's values ``f`` (maximised; failures already ranked last)."""
        raise NotImplementedError

    def _candidate_meta(self) -> dict[str, Any]:
        return {"generation": self._generation}

    # -- protocol ------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    def ask(self, n: int) -> list[Candidate]:
        if not self._members:
            self._members = self._sample_generation()
            self._buffer = list(range(len(self._members)))
            self._id_to_slot, self._values = {}, {}
        out = []
        while self._buffer and len(out) < n:
            slot = self._buffer.pop(0)
            cand = self._new_candidate(self._members[slot], **self._candidate_meta(), index=slot)
            self._id_to_slot[cand.id] = slot
            out.append(cand)
        return out

    def tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        for cand in candidates:
            if cand.id not in self._id_to_slot:
                raise ValueError(f"tell: candidate {cand.id} is not in the current {self.label} generation")
        self._take_pending(candidates, outcomes)
        for cand, out in zip(candidates, outcomes):
            slot = self._id_to_slot[cand.id]
            failed = outcome_failed(out, self.n_objectives)
            self._values[slot] = None if failed else float(np.asarray(out.values, dtype=float).reshape(-1)[0])
        if self._members and len(self._values) == len(self._members):
            pop = len(self._members)
            finite = [v for v in self._values.values() if v is not None]
            worst = (min(finite) - 1.0) if finite else 0.0
            f = [self._values[k] if self._values[k] is not None else worst for k in range(pop)]
            self._told_generation(f)
            self._generation += 1
            self._members, self._buffer, self._id_to_slot, self._values = [], [], {}, {}

    # -- state ---------------------------------------------------------------------------------
    def _generation_state(self) -> dict[str, Any]:
        return {
            "generation": self._generation,
            "members": [m.copy() for m in self._members],
            "buffer": list(self._buffer),
            # pairs, not int-keyed dicts: a state is plain JSON-able data
            "id_to_slot": [[int(k), int(v)] for k, v in self._id_to_slot.items()],
            "values": [[int(k), v] for k, v in self._values.items()],
        }

    def _load_generation_state(self, r: Reader) -> None:
        """Load what :meth:`_generation_state` wrote, checked: every slot lies in the generation."""
        members = r.arrays("members", (self.dim,))
        slots = range(len(members))

        def slot(v: Any, where: str) -> int:
            k = as_int(v, where)
            if k not in slots:
                raise StateError(f"{where}: slot {k} is not in a generation of {len(members)}")
            return k

        def pairs(key: str, value) -> dict[int, Any]:  # [[k, v], ...]; older checkpoints: a mapping
            if isinstance(r.get(key), dict):
                return r.int_map(key, value)
            out = {}
            for i, item in enumerate(r.list(key)):
                if not isinstance(item, (list, tuple)) or len(item) != 2:
                    raise StateError(f"driver.{key}[{i}]: expected a [key, value] pair, got {kind(item)}")
                out[as_int(item[0], f"driver.{key}[{i}][0]")] = value(item[1], f"driver.{key}[{i}][1]")
            return out

        buffer = [slot(v, f"driver.buffer[{i}]") for i, v in enumerate(r.list("buffer"))]
        id_to_slot = pairs("id_to_slot", slot)
        values = pairs("values", lambda v, where: None if v is None else as_float(v, where))
        if any(k not in slots for k in values):
            raise StateError(f"driver.values: slots {sorted(values)} are not in a generation of {len(members)}")
        self._generation = r.int("generation", low=0)
        self._members, self._buffer, self._id_to_slot, self._values = members, buffer, id_to_slot, values
