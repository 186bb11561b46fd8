"""DARE's and DELLA's random numbers (evomerge.merge.methods.draws): a function of position."""

from __future__ import annotations

import math

import pytest
import torch

from evomerge.merge.methods import draws


def chunk(key: int, a: int, n: int) -> torch.Tensor:
    out, tmp = torch.empty(n, dtype=torch.int32), torch.empty(n, dtype=torch.int32)
    return draws.u16_into(key, a, out, tmp).clone()


def test_the_words_are_pinned():
    """A change of the definition changes every DARE merge: these words must never move."""
    got = [draws.u16_scalar(0x12345678, p) for p in (0, 1, 2, 3, 1 << 31, (1 << 32) - 1)]
    assert got == [62951, 54308, 39630, 59341, 64294, 47304]
    assert (draws.block_key(0, 0), draws.block_key(7, 1)) == (3879437112, 204097832)


@pytest.mark.parametrize("a", [0, 5, 65_536 * 3 + 17, (1 << 31) - 100, (1 << 32) - 70_001])
def test_the_int32_tensor_path_equals_the_definition(a):
    key = draws.block_key(12345, 2)
    got = chunk(key, a, 70_000)
    assert got.dtype == torch.int32 and int(got.min()) >= 0 and int(got.max()) < 65536
    for i in range(0, 70_000, 997):
        assert int(got[i]) == draws.u16_scalar(key, a + i), (a, i)


def test_any_chunking_gives_the_same_words():
    key = draws.block_key(3, 0)
    whole = chunk(key, 0, 200_003)
    parts = torch.cat([chunk(key, a, min(65_536, 200_003 - a)) for a in range(0, 200_003, 65_536)])
    odd = torch.cat([chunk(key, a, min(1_000, 200_003 - a)) for a in range(0, 200_003, 1_000)])
    assert torch.equal(whole, parts) and torch.equal(whole, odd)


def test_the_words_are_uniform_and_blocks_are_independent():
    n = 1 << 20
    u = chunk(draws.block_key(9, 0), 0, n).double() / 65536
    v = chunk(draws.block_key(9, 1), 0, n).double() / 65536
    assert abs(float(u.mean()) - 0.5) < 0.002 and abs(float(u.var()) - 1 / 12) < 0.001
    assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 0.005
    # neighbours are not correlated either
    assert abs(float(torch.corrcoef(torch.stack([u[1:], u[:-1]]))[0, 1])) < 0.005
    for d in (0.1, 0.37, 0.9):
        below = draws.keep_below(d)
        assert abs(float((u < below / 65536).double().mean()) - d) < 0.002


def test_keep_below_is_the_ceiling_of_the_density_in_1_65536ths():
    assert [draws.keep_below(d) for d in (0.0, 1.0, 0.5, 1e-9, 1 - 1e-9, -0.5, 2.0)] == [
        0,
        65536,
        32768,
        1,
        65536,
        0,
        65536,
    ]
    for d in (0.3, 0.123456, 0.999):  # u16 < keep_below(d)  ⟺  u16 / 65536 < d
        below = draws.keep_below(d)
        assert (below - 1) / 65536 < d <= below / 65536
        assert below == math.ceil(d * 65536)


def test_a_position_past_32_bits_is_refused():
    with pytest.raises(ValueError, match="fewer than 2\\^32"):
        chunk(1, (1 << 32) - 10, 11)
