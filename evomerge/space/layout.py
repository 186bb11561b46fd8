"""How a parameter space lays its groups over the models: the layer-group edges, the filters that
name the layer-less tensors (embeddings before the layers, final norm and head after), and the
short model names its genes and recipes use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evomerge.errors import ConfigError

#: Substrings naming the non-layer tensors of the supported families (Llama / Mistral / Qwen,
#: GPT-2). A space built over known tensor names keeps only the filters that match one of them
#: (:func:`architecture_filters`); without names it uses them all.
EMBED_FILTERS = ("embed_tokens", "wte", "wpe")
HEAD_FILTERS = ("lm_head", "model.norm.", "ln_f")


def architecture_filters(tensor_names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(embed filters, head filters) for models with these tensors: those of :data:`EMBED_FILTERS`
    / :data:`HEAD_FILTERS` that match a tensor without a layer index, plus the full name of any
    such tensor neither list matches (before the layers if it is an embedding, else after), so a
    recipe names only what its models hold and every layer-less tensor gets its group's value."""
    from evomerge.merge.parameters import pre_layer
    from evomerge.merge.params import layer_index

    layerless = [n for n in tensor_names if layer_index(n) is None]
    embed = [f for f in EMBED_FILTERS if any(f in n for n in layerless)]
    head = [f for f in HEAD_FILTERS if any(f in n for n in layerless)]
    for n in layerless:
        if not any(f in n for f in (*embed, *head)):
            (embed if pre_layer(n) else head).append(n)
    return tuple(embed), tuple(head)


def layer_boundaries(num_layers: int, layer_groups: int | Sequence[int]) -> list[int]:
    """The layer-group edges ``[0, b_1, …, num_layers]``: k near-equal groups, or the given edges, checked."""
    if isinstance(layer_groups, (int, np.integer)):
        k = int(layer_groups)
        if not 1 <= k <= num_layers:
            raise ConfigError(f"parameter space: layer_groups must be between 1 and num_layers={num_layers}, got {k}")
        return [int(round(i * num_layers / k)) for i in range(k + 1)]
    b = [int(v) for v in layer_groups]
    if len(b) < 2 or b[0] != 0 or b[-1] != num_layers or any(x >= y for x, y in zip(b, b[1:])):
        raise ConfigError(
            f"parameter space: layer_groups boundaries must rise strictly from 0 to num_layers={num_layers}, got {list(layer_groups)}"
        )
    return b


def short_names(models: Sequence[str]) -> list[str]:
    """Each model's folder name, numbered when two coincide: the names recipes and genes use."""
    names = [Path(str(m)).name or str(m) for m in models]
    if len(set(names)) < len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names
