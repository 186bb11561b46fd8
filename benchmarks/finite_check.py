"""Cost of the NaN/inf check of source weights (:mod:`evomerge.pool.finite`) on a 135M-shaped model.

Model: random tensors with SmolLM2-135M's shapes (hidden 576, 30 layers, intermediate 1536, 9 heads
/ 3 KV heads, vocabulary 49152, tied embeddings: 134.5M parameters) in ``--dtype`` (default
bfloat16, the dtype such checkpoints ship in), one ``model.safetensors`` written once under
``$TMPDIR/evomerge-bench/finite-135m-<dtype>/`` (never in the repository).

Prints one JSON object per line:

- ``check_seconds``: :func:`~evomerge.pool.finite.check_finite` over every tensor, read through
  :class:`~evomerge.pool.lazy.LazyCheckpoint` as the pool reads them (page cache warm: the file
  was just read), the "clean" memo cleared before each run; best of ``--repeats``;
- ``naive_seconds``: the obvious alternative, ``torch.isfinite(t).all()`` per tensor (a bool mask
  the size of each tensor), same reads, best of ``--repeats``;
- ``read_seconds``: reading every tensor and nothing else (the floor both pay);
- ``cached_seconds``: a second check of the same files in the same process (the memo);
- ``gbytes``: bytes of weights read, 10⁹ B.

Run: ``nice -n 10 .venv/bin/python benchmarks/finite_check.py [--dtype float32] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import timeit
from pathlib import Path

import torch

from evomerge.pool import finite
from evomerge.pool.lazy import LazyCheckpoint

HIDDEN, LAYERS, INTER, HEADS, KV_HEADS, VOCAB = 576, 30, 1536, 9, 3, 49152


def shapes() -> dict[str, tuple[int, ...]]:
    head = HIDDEN // HEADS
    out = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out |= {
            p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
            p + "self_attn.k_proj.weight": (KV_HEADS * head, HIDDEN),
            p + "self_attn.v_proj.weight": (KV_HEADS * head, HIDDEN),
            p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": (INTER, HIDDEN),
            p + "mlp.up_proj.weight": (INTER, HIDDEN),
            p + "mlp.down_proj.weight": (HIDDEN, INTER),
            p + "input_layernorm.weight": (HIDDEN,),
            p + "post_attention_layernorm.weight": (HIDDEN,),
        }
    return out


def build(root: Path, dtype: torch.dtype) -> Path:
    from safetensors.torch import save_file

    path = root / "model.safetensors"
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(0)
        tensors = {name: (torch.randn(shape, generator=gen) * 0.02).to(dtype) for name, shape in shapes().items()}
        save_file(tensors, str(path), metadata={"format": "pt"})
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    root = build(Path(tempfile.gettempdir()) / "evomerge-bench" / f"finite-135m-{args.dtype}", dtype)
    ckpt = LazyCheckpoint(root, label="bench")
    names = ckpt.keys()
    n_params = sum(ckpt.get(n).numel() for n in names)  # also warms the page cache

    def check():
        finite._clean.clear()
        finite.check_finite("bench", names, ckpt.get, root)

    def naive():
        for n in names:
            assert bool(torch.isfinite(ckpt.get(n)).all())

    def read():
        for n in names:
            ckpt.get(n)

    check_s, naive_s, read_s = (min(timeit.repeat(fn, number=1, repeat=args.repeats)) for fn in (check, naive, read))
    t0 = time.perf_counter()
    finite.check_finite("bench", names, ckpt.get, root)  # memo: not read again
    cached_s = time.perf_counter() - t0
    row = {
        "benchmark": "finite_check",
        "dtype": args.dtype,
        "n_params": n_params,
        "gbytes": n_params * dtype.itemsize / 1e9,
        "check_seconds": round(check_s, 4),
        "naive_seconds": round(naive_s, 4),
        "read_seconds": round(read_s, 4),
        "cached_seconds": round(cached_s, 6),
        "threads": args.threads,
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
