"""The toy world's data: two languages, their skills, and the held-out partition.

Skills (``a``, ``b`` two-digit operands 10–99; ``n`` a three-digit number 000–999; digits are
separate words):

=============  =======================  =========================
kind           L1 ("English")           L2 ("Japanese")
=============  =======================  =========================
copy           ``C 1 2 3 =`` → ``1 2 3``  ``c 1 2 3 ?`` → ``1 2 3 !``
reverse        ``R 1 2 3 =`` → ``3 2 1``  ``r 1 2 3 ?`` → ``3 2 1 !``
successor      ``S 1 2 3 =`` → ``1 2 4``  ``s 1 2 3 ?`` → ``1 2 4 !``
addition       ``1 2 + 3 4 =`` → ``0 4 6``  ``1 2 p 3 4 ?`` → ``0 4 6 !``
=============  =======================  =========================

Translation: ``X`` + an L2 question → the same question in L1, ``Y`` + an L1 question → L2.
Sums are written with three digits (zero-padded) so every answer has a fixed length.

The world's fitness tasks, all on held-out inputs:

- ``math``: L1 addition (the math expert's skill — "English math");
- ``lang``: L2 copy / reverse / successor (the language expert's skill — "Japanese chat");
- ``target``: L2 addition ("math in Japanese"), which no training set of any model contains at
  the held-out pairs, and which only the base sees at all (weakly, on training pairs);
- ``target_hard``: L2 addition whose sum is 100 or more (the tens column carries), the target
  of the ``carry`` preset, whose base and language expert meet only sums below 100;
- ``target_carry``: L2 addition whose sum needs any carry (``carries``).

Held-out partition: a seeded permutation of the 8,100 operand pairs puts ``heldout_pairs`` of
them aside, and one of the 1,000 numbers ``heldout_numbers``; no training example of any model
(base, either expert, translation) uses a held-out pair or number, and the fitness tasks draw
their calibration and validation splits from the held-out ones only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

KINDS = ("copy", "reverse", "successor", "addition")
L1_OP = {"copy": "C", "reverse": "R", "successor": "S"}
L2_OP = {"copy": "c", "reverse": "r", "successor": "s"}

ALL_PAIRS = [(a, b) for a in range(10, 100) for b in range(10, 100)]
ALL_NUMBERS = list(range(1000))


def _digits(n: int, width: int) -> str:
    return " ".join(f"{n:0{width}d}")


def _unary_answer(kind: str, n: int) -> int | str:
    if kind == "copy":
        return _digits(n, 3)
    if kind == "reverse":
        return _digits(int(f"{n:03d}"[::-1]), 3)
    if kind == "successor":
        return _digits((n + 1) % 1000, 3)
    raise ValueError(kind)


def question(lang: str, kind: str, x) -> str:
    """The question text of ``kind`` in language ``lang`` ("L1" | "L2") for input ``x``."""
    if kind == "addition":
        a, b = x
        op, end = ("+", "=") if lang == "L1" else ("p", "?")
        return f"{_digits(a, 2)} {op} {_digits(b, 2)} {end}"
    op, end = (L1_OP[kind], "=") if lang == "L1" else (L2_OP[kind], "?")
    return f"{op} {_digits(x, 3)} {end}"


def answer(lang: str, kind: str, x) -> str:
    """The reference answer: bare digits in L1, digits then ``!`` in L2."""
    body = _digits(x[0] + x[1], 3) if kind == "addition" else _unary_answer(kind, x)
    return body if lang == "L1" else f"{body} !"


def example(lang: str, kind: str, x) -> tuple[str, str]:
    return question(lang, kind, x), answer(lang, kind, x)


def translation(direction: str, kind: str, x) -> tuple[str, str]:
    """``X`` (L2 → L1) or ``Y`` (L1 → L2) over the question of ``kind`` for input ``x``."""
    src, dst = ("L2", "L1") if direction == "X" else ("L1", "L2")
    return f"{direction} {question(src, kind, x)}", question(dst, kind, x)


@lru_cache(maxsize=16)
def partition(heldout_pairs: int, heldout_numbers: int, data_seed: int):
    """``(train_pairs, heldout_pairs, train_numbers, heldout_numbers)`` — disjoint, seeded."""
    if not 0 < heldout_pairs < len(ALL_PAIRS) or not 0 < heldout_numbers < len(ALL_NUMBERS):
        raise ValueError("held-out sizes must leave some training data")
    rng = np.random.default_rng([data_seed, 8100])
    order = rng.permutation(len(ALL_PAIRS))
    held_p = tuple(ALL_PAIRS[i] for i in sorted(order[:heldout_pairs]))
    train_p = tuple(ALL_PAIRS[i] for i in sorted(order[heldout_pairs:]))
    rng = np.random.default_rng([data_seed, 1000])
    order = rng.permutation(len(ALL_NUMBERS))
    held_n = tuple(int(i) for i in sorted(order[:heldout_numbers]))
    train_n = tuple(int(i) for i in sorted(order[heldout_numbers:]))
    return train_p, held_p, train_n, held_n


def carries(a: int, b: int) -> int:
    """How many columns of ``a + b`` (two two-digit operands) produce a carry: 0, 1 or 2."""
    units = a % 10 + b % 10 >= 10
    tens = a // 10 + b // 10 + int(units) >= 10
    return int(units) + int(tens)


#: Filters on the operand pairs of an addition component (``"L2.addition@nocarry"``): the
#: "easy" sums a model can learn without ever carrying, and the rest.
PAIR_FILTERS = {
    "nocarry": lambda a, b: carries(a, b) == 0,
    "carry": lambda a, b: carries(a, b) > 0,
    # Sums below 100 (a carry from the units at most) and from 100 up (the tens carry too).
    "below100": lambda a, b: a + b < 100,
    "from100": lambda a, b: a + b >= 100,
}


# A training component is "<lang>.<kind>" (e.g. "L2.addition") or "X.<kind>" / "Y.<kind>" /
# "X.*" / "Y.*" (translation over one or every kind), optionally "@<filter>" on addition's
# operand pairs (``PAIR_FILTERS``, e.g. "L1.addition@nocarry"; other kinds of "X.*@..." are
# kept whole). Mixtures weight components.
def component_examples(component: str, train_pairs, train_numbers) -> list[tuple[str, str]]:
    """Every training example of ``component``, over the training inputs only."""
    head, _, kind = component.partition(".")
    kind, at, filter_name = kind.partition("@")
    kinds = KINDS if kind == "*" else (kind,)
    if at and (filter_name not in PAIR_FILTERS or "addition" not in kinds):
        raise ValueError(f"unknown pair filter {filter_name!r} in component {component!r}")
    keep = PAIR_FILTERS[filter_name] if at else None
    out: list[tuple[str, str]] = []
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r} in component {component!r}")
        inputs = train_pairs if k == "addition" else train_numbers
        if keep is not None and k == "addition":
            inputs = [x for x in inputs if keep(*x)]
        for x in inputs:
            if head in ("L1", "L2"):
                out.append(example(head, k, x))
            elif head in ("X", "Y"):
                out.append(translation(head, k, x))
            else:
                raise ValueError(f"unknown component {component!r}")
    return out


class TaskSpec(NamedTuple):
    """A fitness task: its language, its kinds, and (addition only) a filter on the operand pairs."""

    lang: str
    kinds: tuple[str, ...]
    pairs: str | None = None  # a PAIR_FILTERS name, or None for every held-out pair


# The fitness tasks. Their pools are the held-out inputs. A world ships the ones its settings
# name (``WorldSettings.tasks``; the demo: math, lang, target).
TASKS = {
    "math": TaskSpec("L1", ("addition",)),
    "lang": TaskSpec("L2", ("copy", "reverse", "successor")),
    "target": TaskSpec("L2", ("addition",)),
    # L2 sums of 100 or more: "hard math in the other language", the `carry` preset's target
    # (its base knows only sums below 100).
    "target_hard": TaskSpec("L2", ("addition",), "from100"),
    # L2 sums that need any carry (the target of an earlier carry-world design; docs/toyworld.md).
    "target_carry": TaskSpec("L2", ("addition",), "carry"),
}


def task_pool(task: str, heldout_pairs: int = 1200, heldout_numbers: int = 300, data_seed: int = 0) -> list[dict]:
    """The held-out example pool of fitness task ``task``: dicts with ``id``, ``prompt``, ``answer``."""
    if task not in TASKS:
        raise ValueError(f"unknown toy-world task {task!r}; expected one of {sorted(TASKS)}")
    lang, kinds, pair_filter = TASKS[task]
    _, held_p, _, held_n = partition(heldout_pairs, heldout_numbers, data_seed)
    if pair_filter is not None:
        held_p = [x for x in held_p if PAIR_FILTERS[pair_filter](*x)]
    pool = []
    for kind in kinds:
        for x in held_p if kind == "addition" else held_n:
            q, a = example(lang, kind, x)
            key = f"{x[0]:02d}{x[1]:02d}" if kind == "addition" else f"{x:03d}"
            pool.append({"id": f"{task}-{kind}-{key}", "prompt": q, "answer": a})
    return pool
