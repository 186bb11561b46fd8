"""Recipe YAML text: our writer (gradients in flow style, as mergekit writes them) and reading a
recipe given as a path or as YAML text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from evomerge.errors import ConfigError


class _Dumper(yaml.SafeDumper):
    """Numeric lists (gradients) in flow style, like mergekit writes them."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def plain(value: Any) -> Any:
    """``value`` as plain lists and dicts, without the ``filter: None`` of fallback entries."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not (k == "filter" and v is None)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def read_yaml_source(path_or_text: str | os.PathLike, source_name: str | None = None) -> tuple[str, str]:
    """(text, source name) from a path or from YAML text."""
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and "\n" not in path_or_text and path_or_text.endswith((".yaml", ".yml"))
    ):
        path = Path(path_or_text)
        try:
            return path.read_text(encoding="utf-8"), source_name or str(path)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    return str(path_or_text), source_name or "<recipe>"
