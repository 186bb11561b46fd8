"""Fold a data-flow path's scales into a plain checkpoint, and export it for mergekit.

Pre-norm block (RMSNorm or LayerNorm before attention and MLP)::

    y = x + A(norm₁(x)),   out = y + F(norm₂(y))

With eps = 0, ``norm(c·x) = norm(x)`` for c > 0. Let step k multiply its input by ``s_k`` and
``C_k = s_0·s_1⋯s_k``. Suppose the scaled stream before step k is ``C_{k−1}·h`` where ``h`` is
the stream of a plain stack. Its input is ``C_k·h``, and

    C_k·h + A(norm₁(C_k·h)) = C_k·(h + A(norm₁(h)) / C_k)

and likewise for the MLP, so the scaled path equals ``C_k`` times a plain stack in which the
attention output projection and the MLP down projection of step k (weights *and* biases — the
branch output is affine in them) are multiplied by ``1/C_k``. The final norm removes the overall
factor ``C_L``: logits are equal. With eps > 0, ``norm(c·x) ≠ norm(x)`` only through
``eps/c²`` against the mean square of ``x``, so the difference is of order
``eps·|1/C² − 1| / mean(x²)`` — small for real checkpoints, visible in random tiny ones.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from evomerge.dtypes import torch_dtype
from evomerge.errors import ConfigError
from evomerge.io.outputs import output_dir
from evomerge.merge.dataflow.path_model import (
    SUPPORTED,
    check_sources,
    load_dataflow_sources,
    path_config,
    tokenizer_source,
)

if TYPE_CHECKING:
    from evomerge.merge.recipes.dataflow import DataFlowRecipe


def fold_to_state_dict(recipe: DataFlowRecipe, sources: Mapping[str, Any]) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of the plain model equal to ``recipe``'s scaled path.

    Layer tensors of step k are renamed to position k; its out-projection tensors are multiplied
    by ``1/C_k`` (computed in float32, then cast to ``recipe.dtype``). Non-layer tensors come from
    ``embed_from``. Every tensor is a fresh copy (repeated layers must not share storage on disk).
    """
    info = check_sources(recipe, sources)
    prefix = info.layers_path + "."
    dtype = torch_dtype(recipe.dtype)
    cfg = path_config(recipe, sources)
    cfg.dtype = recipe.dtype
    state = sources[recipe.embed_from].state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if not key.startswith(prefix):
            out[key] = t.detach().to(dtype=dtype, copy=True).contiguous()
    src_states = {name: sources[name].state_dict() for name in recipe.sources}
    outs = tuple(p + "." for p in info.out_projections)
    for k, (step, c_k) in enumerate(zip(recipe.path, recipe.cumulative_scales())):
        src_prefix = f"{prefix}{step.layer}."
        for key, t in src_states[step.model].items():
            if not key.startswith(src_prefix):
                continue
            rest = key[len(src_prefix) :]
            t = t.detach().to(torch.float32)
            if rest.startswith(outs) and c_k != 1.0:
                t = t * (1.0 / c_k)
            out[f"{prefix}{k}.{rest}"] = t.to(dtype=dtype, copy=True).contiguous()
    return cfg, out


def _copy_tokenizer(src: str, dest: Path) -> None:
    p = Path(src)
    if p.is_dir():
        for name in os.listdir(p):
            if name.startswith(("tokenizer", "special_tokens_map", "vocab", "merges", "added_tokens", "chat_template")):
                shutil.copy2(p / name, dest / name)
        return
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(src).save_pretrained(dest)
    except (OSError, ValueError):
        pass  # a hub id without a cached tokenizer: the checkpoint is still usable with one


def materialize_dataflow(
    recipe: DataFlowRecipe,
    out_dir: str | Path,
    *,
    sources: Mapping[str, Any] | None = None,
    device: str = "cpu",
    force: bool = False,
    max_shard_size: int | str = "5GB",
) -> Path:
    """Write the folded checkpoint of ``recipe`` as a Hugging Face model directory.

    ``num_hidden_layers`` is the path length; tokenizer files come from ``embed_from``; the
    recipe is saved next to the weights as ``dataflow_recipe.yaml``. The directory appears
    atomically (built in a temporary sibling, then renamed) with the marker of an evomerge
    checkpoint; ``force`` replaces only what :func:`evomerge.merge.materialize.check_out_dir` allows
    (never a source model of the recipe, a run directory, ``.``, ``$HOME`` or ``/``).
    """
    from huggingface_hub import split_torch_state_dict_into_shards

    from evomerge.merge.materialize import CHECKPOINT_KIND, check_out_dir, save_shard

    out_dir = Path(out_dir).expanduser()
    check_out_dir(out_dir, force, recipe.model_ids())
    writer = "evomerge merge (data-flow fold)"
    with output_dir(out_dir, kind=CHECKPOINT_KIND, writer=writer, what="the folded checkpoint") as tmp:
        if sources is None:
            sources = load_dataflow_sources(recipe, device=device)
        cfg, state = fold_to_state_dict(recipe, sources)
        if getattr(cfg, "tie_word_embeddings", False):
            # Tied heads are rebuilt from the embedding on load; storing both would duplicate it.
            for key in [k for k in state if k.endswith("lm_head.weight")]:
                state.pop(key)
        split = split_torch_state_dict_into_shards(state, max_shard_size=max_shard_size)
        for filename, keys in split.filename_to_tensors.items():
            save_shard({k: state[k] for k in keys}, tmp / filename)
        if split.is_sharded:
            index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        cfg.save_pretrained(tmp)
        gen = getattr(sources[recipe.embed_from], "generation_config", None)
        if gen is not None:
            gen.save_pretrained(tmp)
        _copy_tokenizer(tokenizer_source(recipe), tmp)
        (tmp / "dataflow_recipe.yaml").write_text(recipe.to_yaml())
        steps = ", ".join(f"{s.model}.{s.layer}" + (f"×{s.scale:.3g}" if s.scale != 1 else "") for s in recipe.path)
        (tmp / "README.md").write_text(
            "---\ntags: [evomerge, merge, dataflow]\n---\n# Data-flow merge\n\n"
            f"Layer path ({len(recipe.path)} layers, input scales folded into the output projections): {steps}\n\n"
            "Recipe: see `dataflow_recipe.yaml`.\n"
        )
    return out_dir


def _model_type(src: str) -> str | None:
    cfg = Path(src) / "config.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text()).get("model_type")
        except (OSError, ValueError):
            return None
    return None


def to_mergekit_passthrough(recipe: DataFlowRecipe, *, filters: tuple[str, ...] | None = None) -> dict:
    """A mergekit ``passthrough`` config building the folded checkpoint.

    One slice per run of consecutive steps that come from the same model, use consecutive layers
    and share one fold factor (in practice: a new slice wherever a scale ≠ 1 starts). A slice
    with factor ``1/C_k ≠ 1`` carries the tensor parameter ``scale`` filtered to the output
    projections (``o_proj``/``down_proj``, GPT-2: ``c_proj``). mergekit takes the embeddings from
    the first slice's model and the final norm / head from the last slice's, so the path must
    start and end with layers of ``embed_from`` (true whenever the space fixes the ends).
    """
    nested = [n for n, s in recipe.sources.items() if isinstance(s, dict)]
    if nested:
        raise ConfigError(
            f"mergekit export: source {nested[0]!r} is a nested parameter-space recipe; mergekit cannot express a merge and a "
            "layer path in one file — materialize that source first and point the recipe at the directory"
        )
    first, last = recipe.path[0].model, recipe.path[-1].model
    if first != recipe.embed_from or last != recipe.embed_from:
        raise ConfigError(
            f"mergekit export: the path starts with {first!r} and ends with {last!r}, but mergekit takes embeddings from the "
            f"first slice and the head from the last; both must be embed_from {recipe.embed_from!r}"
        )
    if filters is None:
        mt = _model_type(recipe.sources[recipe.embed_from])
        filters = SUPPORTED[mt].mergekit_filters if mt in SUPPORTED else SUPPORTED["llama"].mergekit_filters
    runs: list[list] = []  # [model, start, end, factor]
    for step, c_k in zip(recipe.path, recipe.cumulative_scales()):
        factor = 1.0 / c_k
        r = runs[-1] if runs else None
        if r and r[0] == step.model and r[2] == step.layer and r[3] == factor:
            r[2] += 1
        else:
            runs.append([step.model, step.layer, step.layer + 1, factor])
    slices = []
    for model, start, end, factor in runs:
        src: dict[str, Any] = {"model": recipe.sources[model], "layer_range": [start, end]}
        if factor != 1.0:
            src["parameters"] = {"scale": [*({"filter": f, "value": factor} for f in filters), {"value": 1.0}]}
        slices.append({"sources": [src]})
    return {"slices": slices, "merge_method": "passthrough", "dtype": recipe.dtype}
