"""Write a merged checkpoint to a directory: safetensors shards, config, tokenizer, model card.

Order of work, so that a failure never leaves a half-written ``out_dir`` behind:

1. validate everything a merge can reject — the recipe, every model (resolved, read, checked for
   architecture, tensor names and shapes), every tensor's parameters, the output directory — before
   creating any file;
2. write into a temporary directory next to ``out_dir`` (same filesystem) and put it in place at
   the end (:func:`evomerge.io.outputs.output_dir`: an existing ``out_dir``, allowed by ``force``, is
   moved aside first and deleted after; the output carries the marker ``.evomerge-output.json``).

What ``force`` may replace is :func:`evomerge.io.outputs.check_replaceable`'s decision: only an
earlier evomerge checkpoint (marker, or the model card of an older evomerge), never a run
directory, a source model, ``.``, ``$HOME`` or ``/`` (or a folder holding one of them).

Shards are planned from the header shapes before any tensor is merged: tensors are packed in pool
order into files of at most ``max_shard_bytes`` (a tensor larger than that gets a file of its own),
named ``model-0000k-of-0000n.safetensors`` with a ``model.safetensors.index.json`` when there is more
than one, else ``model.safetensors`` — the layout ``from_pretrained`` reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from evomerge.dtypes import dtype_name, torch_dtype
from evomerge.errors import EvomergeError
from evomerge.io.outputs import check_replaceable, is_legacy_checkpoint, output_dir
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


#: The marker kind of a Hugging Face checkpoint directory evomerge wrote.
CHECKPOINT_KIND = "hf-checkpoint"


def check_out_dir(out_dir: Path, force: bool, sources) -> None:
    """``out_dir`` may receive a checkpoint: a folder (or nothing) that ``force`` may replace
    (:func:`evomerge.io.outputs.check_replaceable`; ``sources``: the models read)."""
    if (out_dir.exists() or out_dir.is_symlink()) and not out_dir.is_dir():
        raise EvomergeError(f"output '{out_dir}' exists and is not a directory")
    check_replaceable(out_dir, kind=CHECKPOINT_KIND, force=force, protected=sources, recognise=is_legacy_checkpoint)


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
    check_out_dir(out_dir, force, recipe.model_ids())  # before any model is read

    # One-shot merge: stream tensors, cache nothing (the working set is one tensor per model).
    pool = pool_for_recipe(recipe, device=dev, dtype=torch.float32, cache=False)
    check_out_dir(out_dir, force, [pool.directory(m) for m in pool.ids])  # hub ids resolved now
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

    # an existing out_dir (allowed by force) stays until the new one is in place
    with output_dir(out_dir, kind=CHECKPOINT_KIND, writer="evomerge merge", what="the merged checkpoint") as tmp:
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


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def save_shard(tensors: dict, path: Path) -> None:
    """``safetensors.torch.save_file`` whose I/O failure (a full disk) is the ``OSError`` it is,
    not a ``SafetensorError`` (the output's writer words it as one line)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata={"format": "pt"})
    except SafetensorError as exc:
        m = _OS_ERROR.search(str(exc))
        if m is None:
            raise
        code = int(m.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None


def _write_tensors(plan: RecipePlan, plans, shards, files, tmp: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    by_name = {p.name: p for p in plans}
    with tqdm(total=len(plans), desc="merging", unit="tensor", disable=not progress) as bar:
        for shard, fname in zip(shards, files):
            tensors = {}
            for name in shard:
                tensors[name] = plan.compute(by_name[name]).to("cpu").contiguous()
                bar.update(1)
            save_shard(tensors, tmp / fname)
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
