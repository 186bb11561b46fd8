"""Run a data-flow path without materializing a model.

:func:`build_path_model` returns a copy of model A's Hugging Face model whose decoder-layer list
holds *shallow clones* of the source layers: each clone is a new ``nn.Module`` object (so it can
carry its own position ``layer_idx`` for the KV cache and its own input-scale hook) whose weight
tensors are the source's ``Parameter`` objects themselves — nothing is copied, a path of 200
layers over two 7B models costs no extra weight memory, and building one is instantaneous.
Embeddings, final norm, head and rotary embedding are A's modules, shared the same way.

The input scale of step k is applied by a forward pre-hook that multiplies the layer's first
argument (the residual stream) by ``recipe.path[k].scale``; steps with scale 1 get no hook.

The recipe is a :class:`~evomerge.merge.recipes.dataflow.DataFlowRecipe` (duck-typed: that module
runs its recipes through this one).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from evomerge.dtypes import torch_dtype
from evomerge.errors import ConfigError, ModelError
from evomerge.merge.apply import InPlaceMerger, pool_for_recipe
from evomerge.pool.modules import load_causal_lm

if TYPE_CHECKING:
    from evomerge.merge.recipes.dataflow import DataFlowRecipe


@dataclass(frozen=True)
class ArchInfo:
    """Where a causal-LM family keeps its decoder layers and which sub-modules write into the
    residual stream (the ones folding rescales)."""

    layers_path: str  # attribute path from the top model to the ModuleList of decoder layers
    body_path: str  # the module that owns the layer list and loops over it
    out_projections: tuple[str, ...]  # module paths inside a layer, e.g. "self_attn.o_proj"
    mergekit_filters: tuple[str, ...]


_LLAMA = ArchInfo("model.layers", "model", ("self_attn.o_proj", "mlp.down_proj"), ("o_proj", "down_proj"))
_GPT2 = ArchInfo("transformer.h", "transformer", ("attn.c_proj", "mlp.c_proj"), ("c_proj",))

#: Pre-norm families only: folding relies on norm(c·x) = norm(x) at every layer input. Families
#: with norms on the branch outputs (Gemma 2/3 "sandwich" norms) are deliberately absent.
SUPPORTED: dict[str, ArchInfo] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gpt2": _GPT2,
}


def arch_info(config) -> ArchInfo:
    model_type = getattr(config, "model_type", None)
    info = SUPPORTED.get(model_type)
    if info is None:
        raise ModelError(
            f"data-flow paths support pre-norm model types {sorted(SUPPORTED)}; got model_type {model_type!r}"
        )
    if model_type == "gpt2" and getattr(config, "scale_attn_by_inverse_layer_idx", False):
        raise ModelError(
            "data-flow paths: GPT-2 with scale_attn_by_inverse_layer_idx=True depends on the layer position; unsupported"
        )
    return info


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def shallow_clone(module: torch.nn.Module) -> torch.nn.Module:
    """A new module object sharing ``module``'s parameters, buffers and children by reference but
    with its own child / parameter / hook tables, so that replacing a child or adding a hook on
    the clone leaves the original untouched."""
    new = copy.copy(module)
    for key, value in list(vars(new).items()):
        if key.startswith("_") and isinstance(value, (dict, set)):
            setattr(new, key, copy.copy(value))
    return new


def _drop_output_capturing(module: torch.nn.Module) -> None:
    """Forget transformers' lazily installed output-capturing hooks (``output_hidden_states`` /
    ``output_attentions``) on a clone: they are reinstalled on the path model's own modules on
    first use, once per module, so hidden states come out one per path step."""
    module.__dict__.pop("_output_capturing_hooks_installed", None)
    for key in [k for k, fn in module._forward_hooks.items() if getattr(fn, "__name__", "") == "output_capturing_hook"]:
        del module._forward_hooks[key]


def _scale_input(module, args, kwargs):
    s = module._evomerge_input_scale
    if args:
        return (args[0] * s, *args[1:]), kwargs
    kwargs = dict(kwargs)
    kwargs["hidden_states"] = kwargs["hidden_states"] * s
    return args, kwargs


def _clone_layer(layer: torch.nn.Module, position: int, scale: float) -> torch.nn.Module:
    new = shallow_clone(layer)
    _drop_output_capturing(new)
    if hasattr(new, "layer_idx"):
        new.layer_idx = position
    # Attention modules index the KV cache by their own layer_idx: give each clone its position.
    for name, child in layer.named_children():
        if hasattr(child, "layer_idx"):
            c = shallow_clone(child)
            _drop_output_capturing(c)
            c.layer_idx = position
            new._modules[name] = c
    if scale != 1.0:
        new._evomerge_input_scale = float(scale)
        new.register_forward_pre_hook(_scale_input, with_kwargs=True)
    return new


def path_config(recipe: DataFlowRecipe, sources: Mapping[str, Any]):
    """Model A's config with ``num_hidden_layers`` = path length (and per-layer lists such as
    ``layer_types`` rebuilt from each step's source)."""
    a = sources[recipe.embed_from]
    cfg = copy.deepcopy(a.config)
    cfg.num_hidden_layers = len(recipe.path)
    if getattr(cfg, "layer_types", None) is not None:
        types = []
        for s in recipe.path:
            src_types = getattr(sources[s.model].config, "layer_types", None)
            types.append(src_types[s.layer] if src_types else "full_attention")
        cfg.layer_types = types
    return cfg


def check_sources(recipe: DataFlowRecipe, sources: Mapping[str, Any]) -> ArchInfo:
    """Validate loaded sources against the recipe: every source present, same family and widths,
    every layer index in range. Returns the family's :class:`ArchInfo`."""
    missing = [n for n in recipe.sources if n not in sources]
    if missing:
        raise ConfigError(f"data-flow recipe: no loaded model for source(s) {missing}")
    a = sources[recipe.embed_from]
    info = arch_info(a.config)
    keys = ("model_type", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size")
    for name in recipe.sources:
        cfg = sources[name].config
        for key in keys:
            va, vb = getattr(a.config, key, None), getattr(cfg, key, None)
            if va != vb:
                raise ModelError(
                    f"data-flow sources {recipe.embed_from!r} and {name!r} differ in config {key}: {va} vs {vb}"
                )
    num_layers = {name: len(_get(sources[name], info.layers_path)) for name in recipe.sources}
    recipe.check_layers(num_layers)
    return info


def build_path_model(recipe: DataFlowRecipe, sources: Mapping[str, Any]):
    """A runnable model for ``recipe`` whose layers are the sources' layers, shared by reference.

    The returned model is a shallow clone of ``sources[recipe.embed_from]`` with a new config
    (``num_hidden_layers`` = path length) and a new layer list; the source models are unchanged.
    ``generate()`` with a KV cache works because each clone's attention ``layer_idx`` is its
    position on the path.
    """
    info = check_sources(recipe, sources)
    a = sources[recipe.embed_from]
    cfg = path_config(recipe, sources)
    layers = [
        _clone_layer(_get(sources[s.model], info.layers_path)[s.layer], k, s.scale) for k, s in enumerate(recipe.path)
    ]
    top = shallow_clone(a)
    body = shallow_clone(_get(a, info.body_path))
    _drop_output_capturing(top)
    _drop_output_capturing(body)
    setattr(top, info.body_path, body)
    setattr(body, info.layers_path.split(".")[-1], torch.nn.ModuleList(layers))
    top.config = cfg
    body.config = cfg
    if getattr(a, "generation_config", None) is not None:
        top.generation_config = copy.deepcopy(a.generation_config)
    return top


def source_ref(src: str) -> str:
    """How a plain source is loaded: its path when it exists locally, else the hub id as given."""
    return str(Path(src)) if Path(src).exists() else src


def _merge_nested(r, *, device, dtype):
    """Merge a nested parameter-space recipe into a model object in memory (the engine's
    :class:`~evomerge.merge.apply.InPlaceMerger` writing into a copy of the base)."""
    pool = pool_for_recipe(r, device=device, dtype=dtype)
    module = load_causal_lm(
        str(r.base_model) if r.base_model is not None else str(r.models[0].model),
        device=device,
        dtype=dtype,
        role="data-flow source",
    )
    InPlaceMerger(pool, module).apply(r)
    return module


def tokenizer_source(recipe: DataFlowRecipe) -> str:
    """Where the tokenizer comes from: ``embed_from``'s path, or its nested recipe's base model
    (else its first model)."""
    src = recipe.sources[recipe.embed_from]
    if isinstance(src, dict):
        return src.get("base_model") or src["models"][0]["model"]
    return src


def load_dataflow_sources(recipe: DataFlowRecipe, *, device: str = "cpu", dtype: torch.dtype | None = None) -> dict:
    """Load every source of ``recipe`` (merging nested parameter-space recipes in memory)."""
    dtype = dtype or torch_dtype(recipe.dtype)
    out = {}
    for name, src in recipe.sources.items():
        nested = recipe.nested_recipe(name)
        if nested is not None:
            out[name] = _merge_nested(nested, device=device, dtype=dtype)
        else:
            out[name] = load_causal_lm(source_ref(src), device=device, dtype=dtype, role="data-flow source")
    return out
