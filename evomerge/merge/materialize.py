"""Write a merged checkpoint to a directory: safetensors shards, config, tokenizer, model card.

Order of work, so that a failure never leaves a half-written ``out_dir`` behind:

1. validate everything a merge can reject — the recipe, every model (resolved, read, checked for
   architecture, tensor names and shapes), every tensor's parameters, the output directory — before
   creating any file;
2. write into a temporary directory next to ``out_dir`` (same filesystem) and put it in place at
   the end (:func:`evomerge.io.atomic_dir`: an existing ``out_dir``, allowed by ``force``, is moved
   aside first and deleted after).

Shards are planned from the header shapes before any tensor is merged: tensors are packed in pool
order into files of at most ``max_shard_bytes`` (a tensor larger than that gets a file of its own),
named ``model-0000k-of-0000n.safetensors`` with a ``model.safetensors.index.json`` when there is more
than one, else ``model.safetensors`` — the layout ``from_pretrained`` reads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from evomerge.dtypes import dtype_name, torch_dtype
from evomerge.errors import EvomergeError
from evomerge.io import atomic_dir
from evomerge.merge.apply import RecipePlan, pool_for_recipe
from evomerge.merge.model_card import model_card
from evomerge.pool.modules import load_causal_lm

DEFAULT_MAX_SHARD_BYTES = 2 * 1000**3

# Copied from the base (or first model) so the merged directory loads with AutoTokenizer and
# generates like its sources.
SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


def check_device(device) -> torch.device:
    """``device`` as a ``torch.device``; a malformed name or an absent CUDA is one-line error."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise EvomergeError(f"device: expected cpu, cuda, cuda:N or mps, got {str(device)!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EvomergeError(f"device: '{device}' requested but CUDA is not available on this machine")
    return dev


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise EvomergeError(f"output '{out_dir}' exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise EvomergeError(f"output directory '{out_dir}' is not empty; pass --force to overwrite it")


def _check_not_a_source(out_dir: Path, sources: list[Path]) -> None:
    # --force on a source model's directory would delete the weights being merged.
    resolved = out_dir.resolve()
    for src in sources:
        src = src.resolve()
        if resolved == src or resolved in src.parents:
            raise EvomergeError(f"output directory '{out_dir}' would overwrite source model '{src}'")


def plan_shards(names: list[str], sizes: dict[str, int], max_shard_bytes: int) -> list[list[str]]:
    """Greedy packing in order: a new shard starts when the next tensor would overflow this one."""
    shards: list[list[str]] = [[]]
    used = 0
    for name in names:
        size = sizes[name]
        if shards[-1] and used + size > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return [s for s in shards if s]


def materialize(
    recipe,
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    force: bool = False,
    progress: bool = True,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Merge the parameter-space ``recipe`` (a :class:`~evomerge.merge.recipes.parameter.Recipe`;
    a file: :func:`evomerge.merge.formats.load_recipe`) into ``out_dir``.

    ``dtype`` overrides the recipe's output dtype; merging itself runs in float32 on ``device``.
    Returns the output directory.
    """
    out_dir = Path(out_dir).expanduser()
    dev = check_device(device)
    out_dtype = torch_dtype(dtype if dtype is not None else getattr(recipe, "dtype", None))
    _check_out_dir(out_dir, force)

    # One-shot merge: stream tensors, cache nothing (the working set is one tensor per model).
    pool = pool_for_recipe(recipe, device=dev, dtype=torch.float32, cache=False)
    _check_not_a_source(out_dir, [pool.directory(m) for m in pool.ids])
    plan = RecipePlan(recipe, pool, out_dtype)
    plans = [plan.plan(name) for name in pool.tensor_names]  # parameter errors surface here, before I/O

    sizes = {}
    for name in pool.tensor_names:
        numel = 1
        for s in pool.shape(name):
            numel *= s
        item = out_dtype.itemsize if pool.stored_dtype(name).is_floating_point else pool.stored_dtype(name).itemsize
        sizes[name] = numel * item
    shards = plan_shards(pool.tensor_names, sizes, max_shard_bytes)
    n = len(shards)
    files = ["model.safetensors"] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]

    with atomic_dir(out_dir) as tmp:  # an existing out_dir (allowed by force) stays until the new one is in place
        _write_tensors(plan, plans, shards, files, tmp, progress)
        if n > 1:
            index = {
                "metadata": {"total_size": sum(sizes.values())},
                "weight_map": {name: files[k] for k, shard in enumerate(shards) for name in shard},
            }
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        _write_config(pool.reference_dir, tmp, out_dtype)
        for fname in SIDE_FILES:
            src = pool.reference_dir / fname
            if src.is_file():
                shutil.copyfile(src, tmp / fname)
        _write_card(recipe, tmp, out_dtype, pool.numel(), out_dir.name)
    return out_dir


def _write_tensors(plan: RecipePlan, plans, shards, files, tmp: Path, progress: bool) -> None:
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    by_name = {p.name: p for p in plans}
    with tqdm(total=len(plans), desc="merging", unit="tensor", disable=not progress) as bar:
        for shard, fname in zip(shards, files):
            tensors = {}
            for name in shard:
                tensors[name] = plan.compute(by_name[name]).to("cpu").contiguous()
                bar.update(1)
            save_file(tensors, str(tmp / fname), metadata={"format": "pt"})
            del tensors


def _write_config(src_dir: Path, tmp: Path, out_dtype: torch.dtype) -> None:
    cfg = json.loads((src_dir / "config.json").read_text())
    # transformers ≥ 4.56 writes "dtype", older versions "torch_dtype"; keep both readers right.
    cfg["dtype"] = dtype_name(out_dtype)
    if "torch_dtype" in cfg:
        cfg["torch_dtype"] = dtype_name(out_dtype)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _write_card(recipe, tmp: Path, out_dtype: torch.dtype, n_params: int, title: str) -> None:
    text = recipe.to_yaml()
    card = model_card(recipe, recipe_yaml=text, dtype=dtype_name(out_dtype), n_params=n_params, title=title)
    (tmp / "README.md").write_text(card)


def load_merged(recipe, workdir: str | os.PathLike, *, device: str = "cpu", dtype=None):
    """``(model, tokenizer)`` of ``recipe`` merged into ``workdir/merged`` (as :func:`materialize`
    writes it, in the recipe's dtype) and loaded back in ``dtype`` (default float32) on ``device``."""
    from transformers import AutoTokenizer

    out = materialize(recipe, Path(workdir) / "merged", device=device, progress=False)
    return load_causal_lm(str(out), device=device, dtype=torch_dtype(dtype)), AutoTokenizer.from_pretrained(str(out))
