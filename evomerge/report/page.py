"""The report's HTML: one self-contained page (every figure inlined as a data: URI, no script, no
request leaves the file), figures first, numbers in tables below them, raw recipe and metadata
folded away."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1.2em;
color:#1d2430;background:#fafbfc}
h1{margin:.2em 0 .1em;font-size:1.7em}h2{margin:1.6em 0 .4em;font-size:1.25em;border-bottom:2px solid #e3e7ee;
padding-bottom:.2em}.sub{color:#5b6675;margin:0 0 1em;font-size:.95em}
.cards{display:flex;flex-wrap:wrap;gap:.7em;margin:1em 0}.card{background:#fff;border:1px solid #e3e7ee;
border-radius:8px;padding:.6em 1em;min-width:9em;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.card .v{font-size:1.5em;font-weight:650}.card .k{color:#5b6675;font-size:.8em;text-transform:uppercase;
letter-spacing:.03em}.card.hi{border-color:#d62728}.card.hi .v{color:#d62728}
figure{margin:.6em 0 1.2em;background:#fff;border:1px solid #e3e7ee;border-radius:8px;padding:.6em}
figure img{max-width:100%;display:block;margin:0 auto}figcaption{color:#5b6675;font-size:.88em;margin-top:.4em}
table{border-collapse:collapse;margin:.5em 0;background:#fff;font-size:.92em}
td,th{border:1px solid #dde2ea;padding:3px 9px;text-align:left}th{background:#f1f4f8}td.n{text-align:right;
font-variant-numeric:tabular-nums}.note{background:#fff8e1;border:1px solid #f3d98b;border-radius:6px;
padding:.5em .9em;margin:.6em 0;font-size:.92em}details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
pre{background:#f3f5f8;padding:.8em;overflow:auto;font-size:.82em;border-radius:6px}
"""


@dataclass
class Figure:
    section: str  # h2 the figure goes under
    path: Path
    caption: str = ""


def img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def table(rows: list[list[Any]], head: list[str] | None = None) -> str:
    th = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>" if head else ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{html.escape(fmt(c))}</td>"
            if isinstance(c, (int, float))
            else f"<td>{html.escape(fmt(c))}</td>"
            for c in r
        )
        + "</tr>"
        for r in rows
    )
    return f"<table>{th}{body}</table>"


def cards(items: list[tuple[str, Any, bool]]) -> str:
    out = "".join(
        f"<div class='card{' hi' if hi else ''}'><div class='v'>{html.escape(fmt(v))}</div>"
        f"<div class='k'>{html.escape(k)}</div></div>"
        for k, v, hi in items
        if v is not None
    )
    return f"<div class='cards'>{out}</div>"


def page(
    title: str,
    subtitle: str,
    headline: list[tuple[str, Any, bool]],
    sections: list[tuple[str, list[str]]],
    folded: list[tuple[str, Any]],
) -> str:
    """``sections``: (h2, HTML fragments) in order; ``folded``: (summary, object) shown as YAML in a
    closed ``<details>``."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>",
        cards(headline),
    ]
    for h2, fragments in sections:
        if fragments:
            parts.append(f"<h2>{html.escape(h2)}</h2>")
            parts.extend(fragments)
    for summary, obj in folded:
        text = (
            obj if isinstance(obj, str) else yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False)
        )
        parts.append(
            f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text[:40000])}</pre></details>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def figure(f: Figure) -> str:
    cap = f"<figcaption>{html.escape(f.caption)}</figcaption>" if f.caption else ""
    return f"<figure>{img(f.path)}{cap}</figure>"


def note(text: str) -> str:
    return f"<div class='note'>{html.escape(text)}</div>"
