"""The random numbers of DARE and DELLA: a pure function of (stream, block, position).

A randomized merge draws, per tensor, one block of ``n`` uniforms for each expert that samples
(``0 < density < 1``, in recipe order). Entry ``p`` of block ``j`` is

    u = (h(p · 0x9E3779B9 + k_j  mod 2³²) >> 16) / 65536,     k_j = BLAKE2b(stream seed, j) mod 2³²

with ``h`` Chris Wellons' ``lowbias32`` integer hash (a bijection of 32-bit words: ``x ^= x >> 16;
x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16``) and the stream seed the
``initial_seed()`` of :func:`~evomerge.merge.methods.registry.tensor_generator` — BLAKE2b of the
recipe's seed and the tensor's name, so every candidate of a search sees the same numbers
("common random numbers": candidates differ by their recipes only, never by their luck).

Because each entry is a function of its position alone, any chunk of a block can be computed on
its own: the fused merge draws chunk by chunk into cache-sized buffers, nothing tensor-sized is
drawn or kept, and every device, chunking and thread count gives the same masks (CPU and CUDA
included). The 16 bits resolve a density to 1/65536: DARE keeps an entry where ``u < d``, i.e.
``u16 < ⌈65536·d⌉`` (:func:`keep_below`), so a fraction ``⌈65536·d⌉ / 65536`` is kept in
expectation — within 1.6e-5 of ``d``.
"""

from __future__ import annotations

import hashlib
import math

import torch

MULTIPLIER = 0x9E3779B9  # 2³² / φ: consecutive positions spread over the whole word
C1, C2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers
_MASK = 0xFFFFFFFF
SCALE = 1.0 / 65536.0


def stream_seed(generator: torch.Generator | None) -> int:
    """The stream's seed: the generator's ``initial_seed()`` (0 without one)."""
    return int(generator.initial_seed()) if generator is not None else 0


def block_key(seed: int, j: int) -> int:
    """``k_j``: the 32-bit key of block ``j`` of stream ``seed``."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{int(j)}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def keep_below(density: float) -> int:
    """DARE's integer cut: keep where ``u16 < keep_below(d)`` (``⌈65536·d⌉``, clipped to [0, 65536])."""
    return min(65536, max(0, math.ceil(float(density) * 65536.0)))


def u16_scalar(key: int, position: int) -> int:
    """One entry of a block in pure Python (the definition; tests compare the tensor paths to it)."""
    x = (position * MULTIPLIER + key) & _MASK
    x ^= x >> 16
    x = (x * C1) & _MASK
    x ^= x >> 15
    x = (x * C2) & _MASK
    x ^= x >> 16
    return x >> 16


def _as_int32(c: int) -> int:
    """A 32-bit constant as the signed value int32 arithmetic wraps to."""
    return c - (1 << 32) if c >= 1 << 31 else c


def _lshr_xor(x: torch.Tensor, s: int, tmp: torch.Tensor) -> None:
    """``x ^= x >>> s`` on int32 words (the arithmetic shift with its sign bits masked off)."""
    torch.bitwise_right_shift(x, s, out=tmp)
    x.bitwise_xor_(tmp.bitwise_and_((1 << (32 - s)) - 1))


def u16_into(key: int, a: int, out: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """``out = u16`` of positions ``[a, a + len(out))`` of the block keyed ``key``, as int32 in
    [0, 65536) (``out``, ``tmp``: int32 chunk buffers on any device). int32 products wrap modulo
    2³² on every device torch runs on, so the words are the definition's. The last xor-shift of
    ``h`` leaves the top 16 bits alone, so it is skipped."""
    n = out.numel()
    if a + n > 1 << 32:  # positions are 32-bit words; no tensor is this large
        raise ValueError(f"tensor of {a + n} entries: random masks need fewer than 2^32")
    x = torch.add(_spread(n, out.device), _as_int32((a * MULTIPLIER + key) & _MASK), out=out)
    _lshr_xor(x, 16, tmp)
    x.mul_(_as_int32(C1))
    _lshr_xor(x, 15, tmp)
    x.mul_(_as_int32(C2))
    torch.bitwise_right_shift(x, 16, out=x)
    return x.bitwise_and_(0xFFFF)


_SPREAD: dict[tuple, torch.Tensor] = {}


def _spread(n: int, device: torch.device) -> torch.Tensor:
    """``(i · MULTIPLIER) mod 2³²`` for ``i < n``, as int32 words (one buffer per device, grown)."""
    buf = _SPREAD.get((device.type, device.index))
    if buf is None or buf.numel() < n:
        i = torch.arange(n, dtype=torch.int64, device=device)
        buf = ((i * MULTIPLIER) & _MASK).to(torch.int32)  # int64 → int32 keeps the low word
        _SPREAD[(device.type, device.index)] = buf
    return buf[:n]
