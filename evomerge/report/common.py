"""What every report figure shares: pyplot on the Agg backend (import ``plt`` from here), safe number reading, saving, colours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

from evomerge.runs.store import as_float  # noqa: E402

DPI = 110
#: inches: a figure this wide shows 1:1 in the page's column (1130 px at DPI)
PAGE_WIDTH = 10.3


def finite(v: Any) -> float:
    """``v`` as a float (NaN when it is not a number): a run directory is data, never trusted."""
    try:
        return as_float(v)
    except (TypeError, ValueError):
        return float("nan")


def save(fig, out: Path, dpi: int = DPI) -> Path:
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def short_name(model: Any, limit: int = 28) -> str:
    """A model path's last component (a hub id keeps its owner), shortened for a tick label."""
    s = str(model)
    if "/" in s and not s.startswith(("/", ".")) and s.count("/") == 1:
        name = s
    else:
        name = Path(s).name or s
    return name if len(name) <= limit else name[: limit - 1] + "…"
