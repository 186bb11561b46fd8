"""Answer extraction for generation exact match: text -> the answer it states (or ``None``).

``scorer.extract`` is ``None`` (the whole text), ``"pkg.mod:fn"`` (a callable text -> answer) or
a regex whose group ``extract_group`` is the answer (first match; no match -> ``None``, scored 0).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from evomerge.errors import ConfigError
from evomerge.registry import resolve_callable

_CALLABLE_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def is_callable_ref(spec: str) -> bool:
    return bool(_CALLABLE_REF.fullmatch(spec))


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


def make_extractor(spec: str | None, group: int | str = 1) -> Callable[[str], str | None]:
    """``None`` -> identity; ``"pkg.mod:fn"`` -> that callable; otherwise a regex (see the module)."""
    if spec is None:
        return lambda text: text
    if is_callable_ref(spec):
        return resolve_callable(spec, what="scorer.extract")
    try:
        pattern = check_regex(spec)
        group = check_group(pattern, group)
    except ValueError as exc:
        raise ConfigError(f"scorer.extract: {exc}") from None

    def extract(text: str) -> str | None:
        m = pattern.search(text)
        return None if m is None else m.group(group)

    return extract
