"""Quantities a user writes as text in a config: durations (``90m``) and sizes (``8GiB``)."""

from __future__ import annotations

import re


def parse_duration(text: str) -> float:
    """'3600', '90s', '90m', '2h', '1d', '1h30m' → seconds."""
    s = text.strip().lower().replace(" ", "")
    try:
        return float(s)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        raise ValueError(f"expected seconds or a duration like 90m, 2h, 1h30m; got {text!r}")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(sum(float(a) * unit[b] for a, b in parts))


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS.update({"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40})


def parse_size(text: str) -> int:
    """'8GiB', '500MB', '1.5 GB', '1024' → bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip().lower())
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"expected auto, off or a size like 8GiB, 500MB; got {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
