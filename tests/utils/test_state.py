"""evomerge.state: a state tree written as JSON + raw arrays and read back exactly, building nothing
but data; malformed bytes and malformed structures are StateErrors naming where."""

import json
import math
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evomerge.state import (
    Reader,
    StateError,
    generator_data,
    generator_from_data,
    pack,
    random_state_data,
    set_random_state,
    unpack,
)


def same(a, b):
    """Equal trees, with types (tuple vs list, int vs float) and arrays (dtype, shape, bits)."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_round_trip_of_every_kind_of_value():
    tree = {
        "ints": [0, -1, 2**127 + 5],  # PCG64 states are 128-bit ints
        "floats": [0.1, -0.0, math.inf, -math.inf, math.nan, 1e-310],
        "none": None,
        "bool": [True, False],
        "text": "ü $nd",
        "tuple": (1, (2.5, "x")),
        "pending": {3: np.arange(4.0), 10: np.zeros(0)},  # int keys
        "$odd": {"$nd": 1},  # keys that look like tags
        "arrays": [np.arange(6, dtype=np.int32).reshape(2, 3), np.array([True, False]), np.float16([1.5])],
        "scalar": np.array(7.25),
        "numpy_scalars": [np.float64(2.5), np.int64(-3), np.bool_(True)],
    }
    back = unpack(pack(tree))
    expected = dict(tree, numpy_scalars=[2.5, -3, True])
    assert same(back, expected)
    assert isinstance(back["pending"], dict) and list(back["pending"]) == [3, 10]


def test_big_endian_arrays_come_back_little_endian_with_the_same_values():
    a = np.arange(5, dtype=">f8")
    b = unpack(pack([a]))[0]
    assert b.dtype == np.dtype("<f8") and np.array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=12,
    )
)
def test_round_trip_property(tree):
    assert same(unpack(pack(tree)), tree)


@pytest.mark.parametrize(
    "obj, where",
    [
        ({"a": object()}, "state.a: a object is not data"),
        ({"f": lambda: 0}, "state.f: a function is not data"),
        ([np.array([object()], dtype=object)], "state[0]: arrays of dtype object cannot be stored in a state"),
    ],
)
def test_pack_refuses_what_is_not_data(obj, where):
    with pytest.raises(TypeError) as exc:
        pack(obj)
    assert str(exc.value).startswith(where)


def _bytes(header: dict, blob: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + blob


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01", "state: shorter than its header"),
        (struct.pack("<Q", 99) + b"{}", "state: header of 99 bytes in 10 bytes"),
        (struct.pack("<Q", 2) + b"{x", "state: the header is not JSON"),
        (_bytes({"tree": 1}), "state: the header is not {tree, arrays}"),
        (_bytes({"tree": {"$pickle": "x"}, "arrays": []}), "state: unknown tag '$pickle'"),
        (_bytes({"tree": {"$nd": 0, "b": 1}, "arrays": []}), "state: unknown tag '$nd'"),
        (_bytes({"tree": {"$nd": 3}, "arrays": []}), "state: array reference 3 out of range"),
        (_bytes({"tree": {"$float": "1e999"}, "arrays": []}), "state: bad float '1e999'"),
        (_bytes({"tree": {"$map": [[1]]}, "arrays": []}), "state: a $map entry is not a [key, value] pair"),
        (_bytes({"tree": 0, "arrays": [["|O", [1], 0, 8]]}, b"\0" * 8), "state: array 0 has a malformed entry"),
        (_bytes({"tree": 0, "arrays": [["<f8", [2], 0, 8]]}, b"\0" * 8), "state: array 0 of shape (2,) and dtype <f8"),
        (_bytes({"tree": 0, "arrays": [["<f8", [1], 4, 8]]}, b"\0" * 8), "state: array 0 of shape (1,) and dtype <f8"),
        (pickle.dumps({"a": 1}), "state: header of"),
    ],
)
def test_unpack_refuses_malformed_bytes(data, message):
    with pytest.raises(StateError) as exc:
        unpack(data)
    assert str(exc.value).startswith(message)


def test_a_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    data = pickle.dumps(Evil())
    for blob in (data, struct.pack("<Q", len(data)) + data, _bytes({"tree": {"$tuple": data.hex()}, "arrays": []})):
        with pytest.raises(StateError):
            unpack(blob)
    assert not marker.exists()


def test_reader_names_key_expected_and_got():
    r = Reader({"n": "3", "a": np.zeros(3), "l": [1.0, 2.0], "m": {"1": 2, 3: 4}, "b": 1}, "driver")
    cases = [
        (lambda: r.int("n"), "driver.n: expected an int, got a str"),
        (lambda: r.int("missing"), "driver.missing: missing"),
        (lambda: r.array("a", (4,)), "driver.a: expected shape (4,), got (3,)"),
        (lambda: r.array("a", (None, 3)), "driver.a: expected shape (n, 3), got (3,)"),
        (lambda: r.bool("b"), "driver.b: expected true or false, got a int"),
        (lambda: r.sub("l"), "driver.l: expected a mapping, got a list"),
        (lambda: Reader([1], "driver"), "driver: expected a mapping, got a list"),
        (lambda: r.int("b", low=2), "driver.b: expected an int >= 2, got 1"),
    ]
    for fn, message in cases:
        with pytest.raises(StateError) as exc:
            fn()
        assert str(exc.value) == message
    assert r.array("l", (2,)).tolist() == [1.0, 2.0]
    assert r.int_map("m", lambda v, where: v) == {1: 2, 3: 4}


def test_rng_states_round_trip_exactly():
    rs = np.random.RandomState(5)
    rs.standard_normal()  # leaves a cached gaussian
    data = unpack(pack(random_state_data(rs)))
    other = np.random.RandomState(0)
    set_random_state(other, data, "rng")
    assert np.array_equal(rs.standard_normal(7), other.standard_normal(7))

    gen = np.random.default_rng(11)
    gen.random(3)
    again = generator_from_data(unpack(pack(generator_data(gen))), "rng")
    assert np.array_equal(gen.random(5), again.random(5))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"bit_generator": "MT19937"}, "rng.bit_generator: expected 'PCG64', got 'MT19937'"),
        (
            {"bit_generator": "PCG64", "state": {"state": -1, "inc": 1}, "has_uint32": 0, "uinteger": 0},
            "rng.state.state: expected an int >= 0, got -1",
        ),
        ({"bit_generator": "PCG64", "state": [], "has_uint32": 0}, "rng.state: expected a mapping, got a list"),
    ],
)
def test_malformed_generator_states(bad, message):
    with pytest.raises(StateError) as exc:
        generator_from_data(bad, "rng")
    assert str(exc.value) == message


def test_malformed_random_state():
    data = random_state_data(np.random.RandomState(1))
    with pytest.raises(StateError, match=r"^rng.key: expected shape \(624,\), got \(623,\)$"):
        set_random_state(np.random.RandomState(), {**data, "key": data["key"][:-1]}, "rng")
    with pytest.raises(StateError, match=r"^rng.pos: expected 0..624, got 625$"):
        set_random_state(np.random.RandomState(), {**data, "pos": 625}, "rng")
