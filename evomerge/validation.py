"""One line per user error: pydantic validation errors and YAML syntax errors.

:func:`format_validation_error` reports the first error of a ``ValidationError`` as one line, in
one of two layouts of the same facts (where, which key, what is wrong, the value):

* ``layout="key"`` (the run config, data-flow recipes)::

      SOURCE: key 'evaluator.device': expected auto, cpu, … (got 'gpu')
      SOURCE: unknown key 'space.layer_group' (did you mean 'space.layer_groups'?)
      SOURCE: missing key 'models.experts'
      SOURCE: key 'driver.name': unknown driver 'cmaz' (did you mean 'cmaes'?)

* ``layout="path"`` (merge recipes and fitness configs, whose own messages read ``where: problem``
  and ``where = value: problem``)::

      SOURCE: models[0].parameters.density = 1.5: expected …
      SOURCE: task 'copy': scorer.tpye: unknown key (did you mean 'type'?)

Locations are cleaned first: pydantic puts a union member's tag into ``loc`` (the discriminator
value, ``'cmaes'``, or a type name such as ``'int'`` or ``'function-after[…]'``); those segments
are dropped by walking ``model``'s field types along ``loc``, so ``('driver', 'cmaes', 'options',
'sigma')`` reads ``driver.options.sigma``. The same walk finds the model an unknown key sits in —
inside a union, the member chosen by the tag — for the did-you-mean hint. A discriminator value no
member has (``union_tag_invalid``) reads ``key 'driver.name': unknown driver 'cmaz' …``, a missing
one (``union_tag_not_found``) ``missing key 'driver.name'``.

:func:`format_yaml_error`, :func:`parse_yaml` and :func:`read_yaml` do the same for YAML:
``SOURCE: not valid YAML (line 3): expected ',' or ']', but got '<stream end>'``.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Tag, ValidationError

from evomerge.errors import ConfigError, EvomergeError, did_you_mean

# Segments pydantic adds for validator wrappers and smart-union members when the walk below has
# lost track of the type (an ``Any`` field): "function-after[...]", "list[int]", ...
_WRAPPER = re.compile(r"^(function-(after|before|wrap|plain)|[\w-]+\[.*\])$")
_QUOTED = re.compile(r"'([^']*)'")
M = TypeVar("M", bound=BaseModel)


def show_value(value: Any) -> str:
    """A value as a user wrote it in YAML: ``true``/``false``, ``1.0``, ``'text'``, ``[1, 2]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def format_validation_error(
    exc: ValidationError,
    source: str = "",
    model: type[BaseModel] | None = None,
    *,
    layout: Literal["key", "path"] = "key",
    prefix: str = "",
    data: Any = None,
    named_items: Mapping[str, str] | None = None,
) -> str:
    """The first error of ``exc`` as one line (see the module docstring for the layouts).

    ``source`` (a file name, ``""`` for none) heads the line; ``model`` is the validated class (its
    field types clean locations and give did-you-mean hints); ``prefix`` goes before every dotted
    key (``"fitness."``). ``named_items`` (path layout), e.g. ``{"tasks": "task"}``, names an item
    of a list by its ``name`` in ``data``: ``tasks.2.scorer`` reads ``task 'copy': scorer``.
    """
    err = exc.errors()[0]
    loc, holder, union = _walk(model, tuple(err["loc"]))
    kind, msg, known, tail = err["type"], err["msg"], None, ""
    for head in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(head)
    ctx = err.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        disc = _QUOTED.fullmatch(str(ctx.get("discriminator", "")))
        noun = next((p for p in reversed(loc) if isinstance(p, str)), "value")
        loc = (*loc, disc.group(1)) if disc else loc
        if kind == "union_tag_invalid":
            tag = str(ctx.get("tag"))
            msg = f"unknown {noun} {tag!r}{did_you_mean(tag, _QUOTED.findall(str(ctx.get('expected_tags', ''))))}"
        else:
            kind, tail = "missing", did_you_mean("", _tags(union, disc.group(1)) if disc else [], label="one of")
    elif kind == "extra_forbidden":
        known = _fields(holder)
    head = f"{source}: " if source else ""
    if layout == "key":
        return head + _key_line(kind, loc, msg, err, prefix, known, tail)
    return head + _path_line(kind, loc, msg, err, prefix, known, tail, data, named_items or {})


def _key_line(kind: str, loc: tuple, msg: str, err: dict, prefix: str, known: list | None, tail: str) -> str:
    dotted = prefix + ".".join(str(p) for p in loc)
    if known is not None:
        parent = (prefix + ".".join(str(p) for p in loc[:-1])).rstrip(".")
        hint = did_you_mean(str(loc[-1]), known, prefix=f"{parent}." if parent else "", label="known keys")
        return f"unknown key '{dotted}'{hint}"
    if not dotted:
        return msg
    if kind == "missing":
        return f"missing key '{dotted}'{tail}"
    got = err.get("input")
    if kind.startswith("union_tag") or isinstance(got, (dict, list)) or got is None or "got" in msg:
        return f"key '{dotted}': {msg}"
    if isinstance(got, str) and repr(got) in msg:  # the message names the value already
        return f"key '{dotted}': {msg}"
    return f"key '{dotted}': {msg} (got {show_value(got)})"


def _path_line(kind, loc, msg, err, prefix, known, tail, data, named_items) -> str:
    where = _path_text(loc, prefix, data, named_items)
    if known is not None:
        return f"{where}: unknown key{did_you_mean(str(loc[-1]), known, label='known keys')}"
    if not where:
        return msg
    if kind == "missing":
        return f"{where}: missing key{tail}"
    got = err.get("input")
    if "input" not in err or isinstance(got, dict) or kind.startswith("union_tag") or show_value(got) in msg:
        return f"{where}: {msg}"
    return f"{where} = {show_value(got)}: {msg}"


def _path_text(loc: tuple, prefix: str, data: Any, named_items: Mapping[str, str]) -> str:
    """``a.b[0].c``; with ``named_items={"tasks": "task"}``, ``tasks.2.x`` → ``task 'name': x``."""
    if len(loc) >= 2 and loc[0] in named_items and isinstance(loc[1], int) and isinstance(data, dict):
        items = data.get(loc[0])
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        if isinstance(item, dict) and "name" in item:
            rest = _path_text(loc[2:], "", None, {})
            return f"{named_items[loc[0]]} {item['name']!r}" + (f": {rest}" if rest else "")
    text = prefix.rstrip(".")
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text


def parse_options(model: type[M], data: Any, *, prefix: str = "", source: str = "") -> M:
    """``data`` (a mapping, or already a ``model``) validated as ``model``: the typed options of a
    plug-in built from Python. An error raises :class:`ConfigError` with the one line the run
    config would give, keys read ``prefix`` + name (``key 'driver.options.population_size': …``)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(dict(data or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model, prefix=prefix)) from None


# --------------------------------------------------------------------------- the type walk
def _walk(model: Any, loc: tuple) -> tuple[tuple, Any, Any]:
    """(``loc`` without union-tag and wrapper segments, the type holding its last segment, the
    type at its end). Types become ``None`` where the walk cannot follow (``Any``, unknown tags)."""
    out: list = []
    ann, holder = model, None
    for part in loc:
        members = _members(ann)
        if members is not None and isinstance(part, str):
            ann = _pick(members, part)  # the segment names the union member pydantic tried
            continue
        if isinstance(part, str) and ann is None and _WRAPPER.match(part):
            continue
        out.append(part)
        holder, ann = ann, _child(ann, part)
    return tuple(out), holder, ann


def _unwrap(ann: Any) -> Any:
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return ann
            ann = args[0]
        else:
            return ann


def _members(ann: Any) -> list | None:
    """The members of a union of several types (``X | None`` is no union: pydantic adds no tag)."""
    ann = _unwrap(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(ann) if a is not type(None)]
    return None


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _pick(members: list, tag: str) -> Any:
    for member in members:
        if typing.get_origin(member) is typing.Annotated:
            if any(isinstance(m, Tag) and m.tag == tag for m in typing.get_args(member)[1:]):
                return _unwrap(member)
        inner = _unwrap(member)
        if _is_model(inner) and (
            inner.__name__ == tag or any(tag in _literals(f.annotation) for f in inner.model_fields.values())
        ):
            return inner
        if getattr(inner, "__name__", None) == tag or str(inner) == tag:
            return inner
    return None


def _child(ann: Any, part: Any) -> Any:
    ann = _unwrap(ann)
    if _is_model(ann):
        field = ann.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (list, tuple, set, frozenset, typing.Sequence) and isinstance(part, int) and args:
        return args[part] if origin is tuple and args[-1] is not Ellipsis and part < len(args) else args[0]
    if origin in (dict, typing.Mapping, Mapping) and len(args) == 2:
        return args[1]
    return None


def _literals(ann: Any) -> tuple:
    ann = _unwrap(ann)
    return typing.get_args(ann) if typing.get_origin(ann) is typing.Literal else ()


def _fields(holder: Any) -> list[str]:
    holder = _unwrap(holder)
    return list(holder.model_fields) if _is_model(holder) else []


def _tags(union: Any, discriminator: str) -> list[str]:
    """The discriminator values of a union's model members, in declaration order."""
    tags: list[str] = []
    for member in _members(union) or []:
        inner = _unwrap(member)
        field = inner.model_fields.get(discriminator) if _is_model(inner) else None
        tags += [str(t) for t in _literals(field.annotation)] if field is not None else []
    return tags


# --------------------------------------------------------------------------- YAML
def format_yaml_error(exc: yaml.YAMLError, source: str) -> str:
    """``SOURCE: not valid YAML (line N): problem`` (no line when PyYAML gives no position)."""
    mark = getattr(exc, "problem_mark", None)
    line = f" (line {mark.line + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{source}: not valid YAML{line}: {problem}"


def parse_yaml(text: str, source: str, *, error: type[EvomergeError] = ConfigError) -> Any:
    """``yaml.safe_load(text)``; a syntax error raises ``error`` with :func:`format_yaml_error`'s line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(format_yaml_error(exc, source)) from None


def read_yaml(path: str | Path, *, what: str = "file", error: type[EvomergeError] = ConfigError) -> Any:
    """Read and parse the YAML file ``path``; errors name it: ``PATH: cannot read WHAT (reason)``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    return parse_yaml(text, str(path), error=error)
