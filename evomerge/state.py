"""Search state as data: what a checkpoint holds, written and read without pickle.

A *state* is a tree of ``dict`` / ``list`` / ``tuple`` / ``str`` / ``int`` / ``float`` / ``bool`` /
``None`` and numpy arrays of plain numeric dtypes (numpy scalars are stored as Python numbers).
:func:`pack` writes one as bytes::

    u64 little-endian n | n bytes of JSON {"tree": …, "arrays": [[dtype, shape, offset, nbytes], …]} | array bytes

with each array in the tree replaced by ``{"$nd": i}``, a tuple by ``{"$tuple": […]}``, a dict
whose keys are not all plain strings by ``{"$map": [[k, v], …]}`` and a non-finite float by
``{"$float": "nan" | "inf" | "-inf"}``. :func:`unpack` builds nothing but those types (arrays from
raw little-endian bytes of a fixed list of dtypes): no class is named in the data, so reading a
state never runs code, whoever wrote it.

What reads a state back checks its structure with :class:`Reader`; every failure is a
:class:`StateError` naming the key and expected vs got (a checkpoint whose structure is wrong is
corrupt: the run falls back to the previous one). The numpy RNG converters live here too, since
every driver and the run's global RNGs use them.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: The only dtypes an array in a state may have (little-endian).
DTYPES = ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8")
_TAGS = ("$nd", "$tuple", "$map", "$float")
_HEADER = struct.Struct("<Q")


class StateError(ValueError):
    """A state (a checkpoint's) has the wrong structure: a missing key, a wrong type or shape."""


# --------------------------------------------------------------------------------------------
# bytes <-> tree
# --------------------------------------------------------------------------------------------
def pack(tree: Any) -> bytes:
    """``tree`` as bytes (see the module docstring); ``TypeError`` for anything that is not data."""
    arrays: list[np.ndarray] = []
    doc = _encode(tree, arrays, "state")
    table, blobs, offset = [], [], 0
    for a in arrays:
        raw = np.ascontiguousarray(a).tobytes()
        table.append([a.dtype.str, list(a.shape), offset, len(raw)])
        blobs.append(raw)
        offset += len(raw)
    header = json.dumps({"tree": doc, "arrays": table}, allow_nan=False, separators=(",", ":")).encode()
    return _HEADER.pack(len(header)) + header + b"".join(blobs)


def unpack(data: bytes) -> Any:
    """The tree :func:`pack` wrote; :class:`StateError` for anything else."""
    if len(data) < _HEADER.size:
        raise StateError("state: shorter than its header")
    (n,) = _HEADER.unpack_from(data)
    if n > len(data) - _HEADER.size:
        raise StateError(f"state: header of {n} bytes in {len(data)} bytes")
    try:
        header = json.loads(data[_HEADER.size : _HEADER.size + n])
    except ValueError as exc:
        raise StateError(f"state: the header is not JSON ({exc})") from None
    if not isinstance(header, dict) or set(header) != {"tree", "arrays"} or not isinstance(header["arrays"], list):
        raise StateError("state: the header is not {tree, arrays}")
    blob = memoryview(data)[_HEADER.size + n :]
    arrays = [_array(entry, blob, i) for i, entry in enumerate(header["arrays"])]
    return _decode(header["tree"], arrays)


def _encode(obj: Any, arrays: list, where: str) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if math.isfinite(f):
            return f
        return {"$float": "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")}
    if isinstance(obj, np.ndarray):
        a = obj if obj.dtype.str in DTYPES else obj.astype(obj.dtype.newbyteorder("<"))
        if a.dtype.str not in DTYPES:
            raise TypeError(f"{where}: arrays of dtype {obj.dtype} cannot be stored in a state")
        arrays.append(a)
        return {"$nd": len(arrays) - 1}
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, arrays, f"{where}.{k}") for k, v in obj.items()}
        return {
            "$map": [
                [_encode(k, arrays, f"{where} key"), _encode(v, arrays, f"{where}[{k!r}]")] for k, v in obj.items()
            ]
        }
    raise TypeError(f"{where}: a {type(obj).__name__} is not data (only dicts, lists, numbers, strings, arrays)")


def _array(entry: Any, blob: memoryview, i: int) -> np.ndarray:
    ok = isinstance(entry, list) and len(entry) == 4
    if ok:
        dtype, shape, offset, nbytes = entry
        ok = (
            dtype in DTYPES
            and isinstance(shape, list)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, nbytes))
        )
    if not ok:
        raise StateError(f"state: array {i} has a malformed entry {str(entry)[:80]}")
    dt = np.dtype(dtype)
    if math.prod(shape) * dt.itemsize != nbytes or offset + nbytes > len(blob):
        raise StateError(f"state: array {i} of shape {tuple(shape)} and dtype {dtype} does not fit its {nbytes} bytes")
    return np.frombuffer(blob[offset : offset + nbytes], dtype=dt).reshape(shape).copy()


def _decode(doc: Any, arrays: list[np.ndarray]) -> Any:
    if doc is None or isinstance(doc, (bool, int, float, str)):
        return doc
    if isinstance(doc, list):
        return [_decode(v, arrays) for v in doc]
    if not isinstance(doc, dict):
        raise StateError(f"state: unexpected {type(doc).__name__}")
    tags = [k for k in doc if k.startswith("$")]
    if not tags:
        return {k: _decode(v, arrays) for k, v in doc.items()}
    if len(doc) != 1 or tags[0] not in _TAGS:
        raise StateError(f"state: unknown tag {tags[0]!r}")
    tag, value = tags[0], doc[tags[0]]
    if tag == "$nd":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(arrays):
            raise StateError(f"state: array reference {value!r} out of range")
        return arrays[value].copy()
    if tag == "$float":
        if value not in ("nan", "inf", "-inf"):
            raise StateError(f"state: bad float {value!r}")
        return float(value)
    if not isinstance(value, list):
        raise StateError(f"state: {tag} holds a {type(value).__name__}, not a list")
    if tag == "$tuple":
        return tuple(_decode(v, arrays) for v in value)
    out = {}
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise StateError("state: a $map entry is not a [key, value] pair")
        key = _decode(pair[0], arrays)
        if not isinstance(key, (str, int, float, bool, tuple)) and key is not None:
            raise StateError(f"state: a $map key is a {type(key).__name__}")
        out[key] = _decode(pair[1], arrays)
    return out


# --------------------------------------------------------------------------------------------
# reading a state with its structure checked
# --------------------------------------------------------------------------------------------
def kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return "None" if value is None else f"a {type(value).__name__}"


class Reader:
    """Typed access to one mapping of a state: ``Reader(state, "driver").int("next_id")``. Every
    accessor raises :class:`StateError` (``driver.next_id: expected an int, got a str``)."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise StateError(f"{where}: expected a mapping, got {kind(data)}")
        self.data, self.where = data, where

    def _at(self, key: Any) -> str:
        return f"{self.where}.{key}"

    def has(self, key: Any) -> bool:
        return key in self.data

    def get(self, key: Any) -> Any:
        if key not in self.data:
            raise StateError(f"{self._at(key)}: missing")
        return self.data[key]

    def sub(self, key: Any) -> Reader:
        return Reader(self.get(key), self._at(key))

    def _none(self, key: Any, optional: bool) -> bool:
        return optional and self.get(key) is None

    def int(self, key: Any, *, optional: bool = False, low: int | None = None) -> int | None:
        if self._none(key, optional):
            return None
        return as_int(self.get(key), self._at(key), low=low)

    def float(self, key: Any, *, optional: bool = False) -> float | None:
        if self._none(key, optional):
            return None
        return as_float(self.get(key), self._at(key))

    def bool(self, key: Any) -> bool:
        v = self.get(key)
        if not isinstance(v, (bool, np.bool_)):
            raise StateError(f"{self._at(key)}: expected true or false, got {kind(v)}")
        return bool(v)

    def str(self, key: Any, *, optional: bool = False) -> str | None:
        v = self.get(key)
        if optional and v is None:
            return None
        if not isinstance(v, str):
            raise StateError(f"{self._at(key)}: expected a string, got {kind(v)}")
        return v

    def list(self, key: Any) -> list:
        v = self.get(key)
        if not isinstance(v, (list, tuple)):
            raise StateError(f"{self._at(key)}: expected a list, got {kind(v)}")
        return list(v)

    def array(
        self, key: Any, shape: Sequence[int | None] | None = None, *, optional: bool = False, dtype: Any = np.float64
    ) -> np.ndarray | None:
        if self._none(key, optional):
            return None
        return as_array(self.get(key), self._at(key), shape, dtype=dtype)

    def arrays(self, key: Any, shape: Sequence[int | None] | None = None) -> list[np.ndarray]:
        return [as_array(v, f"{self._at(key)}[{i}]", shape) for i, v in enumerate(self.list(key))]

    def int_map(self, key: Any, value: Callable[[Any, str], Any]) -> dict[int, Any]:
        """A mapping with int keys (ints, or strings of digits), each value read by ``value(v, where)``."""
        v = self.get(key)
        if not isinstance(v, dict):
            raise StateError(f"{self._at(key)}: expected a mapping, got {kind(v)}")
        out = {}
        for k, item in v.items():
            out[as_int(k, f"{self._at(key)} key", digits=True)] = value(item, f"{self._at(key)}[{k!r}]")
        return out


def as_int(v: Any, where: str, *, low: int | None = None, digits: bool = False) -> int:
    if digits and isinstance(v, str) and v.lstrip("-").isdigit():
        v = int(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise StateError(f"{where}: expected an int, got {kind(v)}")
    if low is not None and v < low:
        raise StateError(f"{where}: expected an int >= {low}, got {int(v)}")
    return int(v)


def as_float(v: Any, where: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise StateError(f"{where}: expected a number, got {kind(v)}")
    return float(v)


def as_array(v: Any, where: str, shape: Sequence[int | None] | None = None, *, dtype: Any = np.float64) -> np.ndarray:
    """``v`` (an array, or a list of numbers) as a fresh array of ``dtype`` with ``shape`` (None: any size)."""
    if isinstance(v, (list, tuple)):
        try:
            v = np.asarray(v, dtype=dtype)
        except (TypeError, ValueError):
            raise StateError(f"{where}: expected numbers, got a list of something else") from None
    if not isinstance(v, np.ndarray):
        raise StateError(f"{where}: expected an array, got {kind(v)}")
    want = np.dtype(dtype)
    if v.dtype.kind not in ("b", "i", "u", "f") or (want.kind in "iu" and v.dtype.kind not in "biu"):
        raise StateError(f"{where}: expected {want} values, got {v.dtype}")
    if shape is not None and (
        v.ndim != len(shape) or any(s is not None and s != got for s, got in zip(shape, v.shape))
    ):
        want_shape = "(" + ", ".join("n" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")
        raise StateError(f"{where}: expected shape {want_shape}, got {v.shape}")
    return np.array(v, dtype=want, copy=True)


# --------------------------------------------------------------------------------------------
# numpy RNGs as data
# --------------------------------------------------------------------------------------------
def random_state_data(rs: np.random.RandomState) -> dict[str, Any]:
    """A legacy ``RandomState`` (MT19937) as data."""
    st = rs.get_state(legacy=False)
    return {
        "key": np.asarray(st["state"]["key"], dtype=np.uint32).copy(),
        "pos": int(st["state"]["pos"]),
        "has_gauss": int(st["has_gauss"]),
        "gauss": float(st["gauss"]),
    }


def set_random_state(rs: np.random.RandomState, data: Any, where: str) -> None:
    r = Reader(data, where)
    key = r.array("key", (624,), dtype=np.uint32)
    pos = r.int("pos", low=0)
    if pos > 624:
        raise StateError(f"{where}.pos: expected 0..624, got {pos}")
    has_gauss = r.int("has_gauss", low=0)
    rs.set_state(("MT19937", key, pos, 1 if has_gauss else 0, r.float("gauss")))


def generator_data(gen: np.random.Generator) -> dict[str, Any]:
    """A ``Generator``'s bit generator state (a dict of ints and strings) as data."""
    return dict(gen.bit_generator.state)


def generator_from_data(data: Any, where: str) -> np.random.Generator:
    """A fresh ``default_rng()``-type generator in the state ``data`` (a PCG64 state)."""
    r = Reader(data, where)
    if r.str("bit_generator") != "PCG64":
        raise StateError(f"{where}.bit_generator: expected 'PCG64', got {r.get('bit_generator')!r}")
    inner = r.sub("state")
    state = {
        "bit_generator": "PCG64",
        "state": {"state": inner.int("state", low=0), "inc": inner.int("inc", low=0)},
        "has_uint32": r.int("has_uint32", low=0),
        "uinteger": r.int("uinteger", low=0),
    }
    gen = np.random.default_rng()
    try:
        gen.bit_generator.state = state
    except (TypeError, ValueError, OverflowError) as exc:
        raise StateError(f"{where}: not a PCG64 state ({exc})") from None
    return gen


__all__ = [
    "DTYPES",
    "Reader",
    "StateError",
    "as_array",
    "as_float",
    "as_int",
    "generator_data",
    "generator_from_data",
    "kind",
    "pack",
    "random_state_data",
    "set_random_state",
    "unpack",
]
