"""The memory a merge worker plans for, per model size, expert count, method kind and mode — the table
in docs/cluster.md, computed by the run's own planner (:func:`evomerge.merge.placement.plan_placement`)
from real models' shapes (bf16, no machine limit, reserve for a GPU of ``--gpu-gib``).

Columns: ``gpu`` (everything on the device) and ``offload`` (device | pinned host memory), for any
method (DARE and DELLA draw their uniforms chunk by chunk: three more chunk buffers, no per-entry
scratch; the plan assumes them), in GiB, *without* the
evaluation reserve the planner adds on the device (``max(2 GiB, 10 %)`` of the card: activations,
KV cache, logits; size it to the batch). Prints Markdown.

Run: ``.venv/bin/python benchmarks/memory_table.py [--experts 1 2 3 4]``.
"""

from __future__ import annotations

import argparse

from evomerge.merge.placement import GiB, Memory, ModelSize, plan_placement

MODELS = {  # name: (float entries, largest tensor, largest MLP matrix)
    "1B (Llama-3.2-1B)": ModelSize(1_235_814_400, 128_256 * 2048, 2048 * 8192),
    "1.1B (TinyLlama)": ModelSize(1_100_048_384, 32_000 * 2048, 2048 * 5632),
    "7B (Mistral-7B)": ModelSize(7_241_732_096, 32_000 * 4096, 4096 * 14336),
    "8B (Llama-3-8B)": ModelSize(8_030_261_248, 128_256 * 4096, 4096 * 14336),
}


def cell(size: ModelSize, n: int, memory: str, sampling: bool, device: str) -> str:
    free = Memory(host_free=None, device_free=None, device_total=None)
    p = plan_placement(size, experts=n, dtype_bytes=2, device=device, memory=memory, free=free, sampling=sampling)
    on_device = (p.device_bytes - p.reserve_bytes) / GiB
    if p.host_bytes:
        return f"{on_device:.1f} \\| {p.host_bytes / GiB:.1f}"
    return f"{on_device:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    head = ["model", "experts", "gpu", "offload"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, size in MODELS.items():
        for n in args.experts:
            row = [name, str(n)]
            for memory in ("gpu", "offload"):
                row.append(cell(size, n, memory, True, args.device))
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
