"""Answer extraction for generation exact match: text -> the answer it states (or ``None``).

``scorer.extract`` is one of:

* ``None`` — the whole generated text;
* a preset: ``last_number`` (the last number in the text), ``gsm8k`` (the number after the last
  ``####``, GSM8K's answer line), ``boxed`` (the contents of the last ``\\boxed{…}``, braces
  balanced), ``choice_letter`` (a capital letter A–Z after "answer", "answer is" or "answer:",
  else one that opens the text followed by ``)``, ``.``, ``:`` or nothing — ``"(B) …"``, ``"C."``,
  but not the article in ``"A cat …"``);
* ``"pkg.mod:fn"`` — a callable text -> answer;
* a regex whose group ``extract_group`` is the answer (first match).

No match gives ``None`` (scored 0). A preset also reads the **reference** answer the same way,
so a dataset may keep GSM8K's full solutions (``… #### 72``) or ``\\boxed{}`` answers as its
references; numbers compare in a canonical form (no thousands separators or ``$``, no trailing
zeros after a decimal point: ``1,234.50`` reads ``1234.5``). Regex and callable extraction leave
the reference as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from evomerge.errors import ConfigError
from evomerge.registry import resolve_callable

_CALLABLE_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_NUMBER = re.compile(r"(?:-\$?|\$-?)?\d(?:[\d,]*\d)?(?:\.\d+)?")
_AFTER_HASHES = re.compile(r"\s*(" + _NUMBER.pattern + ")")
_ANSWER_LETTER = re.compile(r"(?i:\banswer)(?:\s+is)?\s*[:：]?\s*\(?([A-Z])\b")
_LEADING_LETTER = re.compile(r"\s*\(?([A-Z])(?=[).:]|\s*$)")


def canonical_number(text: str) -> str:
    """``"-$1,234.50"`` -> ``"-1234.5"``, ``"72.0"`` -> ``"72"``."""
    out = text.replace(",", "").replace("$", "")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") else out


def _canonical(text: str) -> str:
    text = text.strip()
    return canonical_number(text) if _NUMBER.fullmatch(text) else text


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return canonical_number(found[-1]) if found else None


def gsm8k_answer(text: str) -> str | None:
    k = text.rfind("####")
    if k < 0:
        return None
    m = _AFTER_HASHES.match(text, k + 4)
    return canonical_number(m.group(1)) if m else None


def boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return _canonical(text[i + 1 : j])
    return None  # unbalanced: the generation stopped inside the box


def choice_letter(text: str) -> str | None:
    m = _ANSWER_LETTER.search(text) or _LEADING_LETTER.match(text)
    return m.group(1) if m else None


def _identity(text: str) -> str:
    return text


def _reference_number(ref: str) -> str:
    return last_number(ref) or ref.strip()


@dataclass(frozen=True)
class Extractor:
    """``extract(text)``: the answer a generation states; ``reference(answer)``: the reference in
    the same form."""

    extract: Callable[[str], str | None]
    reference: Callable[[str], str]


PRESETS: dict[str, Extractor] = {
    "last_number": Extractor(last_number, _reference_number),
    "gsm8k": Extractor(gsm8k_answer, lambda ref: gsm8k_answer(ref) or _canonical(ref)),
    "boxed": Extractor(boxed, lambda ref: boxed(ref) or _canonical(ref)),
    "choice_letter": Extractor(choice_letter, lambda ref: ref.strip().strip("().").strip().upper()),
}


def is_callable_ref(spec: str) -> bool:
    return bool(_CALLABLE_REF.fullmatch(spec))


def is_regex(spec: str | None) -> bool:
    return spec is not None and spec not in PRESETS and not is_callable_ref(spec)


def check_regex(spec: str) -> re.Pattern:
    """The compiled regex, or ValueError with the reason (a config validator's message)."""
    try:
        return re.compile(spec)
    except re.error as exc:
        raise ValueError(f"invalid regex ({exc})") from None


def check_group(pattern: re.Pattern, group: int | str) -> int | str:
    """The group to read: ``group``, or 0 (the whole match) for the default 1 on a group-less regex."""
    if isinstance(group, int):
        if group == 1 and pattern.groups == 0:
            return 0
        if group > pattern.groups:
            raise ValueError(f"regex {pattern.pattern!r} has {pattern.groups} groups, extract_group is {group}")
    elif group not in pattern.groupindex:
        raise ValueError(f"regex {pattern.pattern!r} has no group named {group!r}")
    return group


def make_extractor(spec: str | None, group: int | str = 1, *, search=()) -> Extractor:
    """The :class:`Extractor` for a ``scorer.extract`` setting (see the module docstring);
    ``search``: folders a callable reference's module is also looked for in."""
    if spec is None:
        return Extractor(_identity, _identity)
    if spec in PRESETS:
        return PRESETS[spec]
    if is_callable_ref(spec):
        return Extractor(resolve_callable(spec, what="scorer.extract", search=search), _identity)
    try:
        pattern = check_regex(spec)
        group = check_group(pattern, group)
    except ValueError as exc:
        raise ConfigError(f"scorer.extract: {exc}") from None

    def extract(text: str) -> str | None:
        m = pattern.search(text)
        return None if m is None else m.group(group)

    return Extractor(extract, _identity)
