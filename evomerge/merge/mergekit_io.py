"""mergekit YAML import and export for parameter-space recipes.

Export writes a config that ``mergekit-yaml`` merges to the same weights (up to float rounding
and, for DARE/DELLA, the random masks: mergekit draws them from torch's global RNG). Import
accepts mergekit's ``models:`` form. Whatever one side cannot express is refused with one line
saying why: options where we follow the papers instead of mergekit, mergekit's ``slices`` /
``modules`` / ``passthrough`` (layer stacking: a data-flow recipe), LoRA references, tokenizer
surgery, string-valued parameters, methods evomerge does not implement.

What mergekit ignores but a round trip needs (``seed``, ``options``, the base model of a
``linear`` merge) travels in a top-level ``evomerge:`` block; mergekit's config model ignores
unknown keys. A mergekit file without that block gets ``seed: 0`` and, when it holds a
gradient, ``options.layerless_gradient: start``: mergekit's rule since 0.1.2 (its
``MergePlanner.plan_module`` resolves the embeddings, the final norm and the head with one
``ConfigReader`` at ``t = 0``; up to 0.1.1 the head and final norm took ``t = 1``, our ``ends``).

This module works on our recipe's plain form and duck-typed recipes: :func:`read_mergekit` turns a
mergekit config into our recipe dict, :func:`evomerge.merge.formats.from_mergekit` validates it into
a :class:`~evomerge.merge.recipes.parameter.Recipe`, and ``Recipe.to_mergekit()`` calls
:func:`to_mergekit`. Which options mergekit cannot express: :mod:`evomerge.merge.parameters`.
"""

from __future__ import annotations

import copy
from typing import Any

from evomerge.dtypes import DTYPE_NAMES
from evomerge.errors import ConfigError
from evomerge.merge.methods import method_names
from evomerge.merge.parameters import OPTIONS
from evomerge.merge.yaml_text import dump_yaml

MERGEKIT_KEYS = (
    "merge_method",
    "base_model",
    "models",
    "slices",
    "modules",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    "tokenizer",
    "chat_template",
    "evomerge",
)
_DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


# --------------------------------------------------------------------------- export


def to_mergekit(recipe) -> dict[str, Any]:
    """The mergekit config (a dict ready for ``yaml.dump``) that rebuilds ``recipe``'s weights."""
    spec = recipe.spec
    for name, value in recipe.options.items():
        option = OPTIONS[name]
        if not option.exports_value(value) and (recipe.has_gradient() or not option.gradients_only):
            raise ConfigError(f"options.{name} = {value}: cannot export to mergekit ({option.mergekit})")
    data = recipe.to_dict()
    block: dict[str, Any] = {}
    if recipe.seed != 0:
        block["seed"] = recipe.seed
    if recipe.options or recipe.has_gradient():
        block["options"] = dict(recipe.options)
    out: dict[str, Any] = {"merge_method": recipe.merge_method}
    base = recipe.base_model
    if base is not None:
        if spec.needs_base or any(m.model == base for m in recipe.models):
            out["base_model"] = base
        else:
            # mergekit would add an unlisted base to a linear merge as a weightless input and fail.
            block["base_model"] = base
    out["models"] = data["models"]
    if "parameters" in data:
        out["parameters"] = data["parameters"]
    out["dtype"] = recipe.dtype
    if block:
        out["evomerge"] = block
    return copy.deepcopy(out)


def to_mergekit_yaml(recipe) -> str:
    return dump_yaml(to_mergekit(recipe))


# --------------------------------------------------------------------------- import


def refuse(source: str | None, message: str) -> ConfigError:
    """The one-line error about the mergekit config ``source`` (when named)."""
    return ConfigError(f"{source}: {message}" if source else message)


def _check_setting(value: Any, where: str, source: str | None) -> Any:
    """Refuse string values (mergekit allows them; no method of ours takes one) and drop
    conditional entries after a filter-less one (mergekit never reaches them)."""
    if isinstance(value, str):
        raise refuse(source, f"{where} = {value!r}: string parameter values are not supported; expected a number")
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                raise refuse(source, f"{where}[{i}] = {item!r}: string parameter values are not supported")
            if isinstance(item, dict):
                item = dict(item)
                if "value" in item:
                    item["value"] = _check_setting(item["value"], f"{where}[{i}].value", source)
                out.append(item)
                if item.get("filter") in (None, "*"):
                    break
            else:
                out.append(item)
        return out
    return value


def read_mergekit(data: Any, source: str | None = None) -> tuple[dict[str, Any], dict | None]:
    """Our recipe's plain form (without ``options``) for the mergekit config ``data`` (parsed YAML),
    and the options its ``evomerge:`` block carries (None: no such key). Refuses, in one line naming
    ``source``, whatever a parameter-space recipe cannot express; the values are validated by the
    recipe (:func:`evomerge.merge.formats.from_mergekit`)."""
    if not isinstance(data, dict):
        raise refuse(source, f"expected a mapping of mergekit keys, got {type(data).__name__}")
    unknown = [k for k in data if k not in MERGEKIT_KEYS]
    if unknown:
        raise refuse(source, f"{unknown[0]}: unknown key; expected one of: {', '.join(MERGEKIT_KEYS)}")
    method = data.get("merge_method")
    if method is None:
        raise refuse(source, "merge_method: missing required key")
    if method == "passthrough":
        raise refuse(
            source,
            "merge_method = 'passthrough': layer stacking is a data-flow recipe (merge_method: dataflow), "
            "not a parameter-space one",
        )
    if method not in method_names():
        raise refuse(
            source,
            f"merge_method = {method!r}: mergekit method with no evomerge equivalent; expected one of: "
            f"{', '.join(method_names())}",
        )
    for key in ("slices", "modules"):
        if data.get(key):
            raise refuse(source, f"{key}: mergekit {key} cannot be expressed in a parameter-space recipe; use models:")
    if data.get("tokenizer") is not None:
        raise refuse(source, "tokenizer: tokenizer surgery is not supported; the merge uses the base model's tokenizer")
    if data.get("tokenizer_source") not in (None, "base"):
        raise refuse(
            source,
            f"tokenizer_source = {data['tokenizer_source']!r}: only the base model's tokenizer is supported",
        )
    if data.get("chat_template") is not None:
        raise refuse(source, "chat_template: not supported; the merge keeps the base model's chat template")

    models = data.get("models")
    if not isinstance(models, list):
        raise refuse(source, "models: missing; expected a list of {model, parameters}")
    recipe: dict[str, Any] = {"merge_method": method, "models": []}
    base = data.get("base_model")
    if base is not None:
        recipe["base_model"] = _model_ref(base, "base_model", source)
    for i, entry in enumerate(models):
        if not isinstance(entry, dict) or "model" not in entry:
            raise refuse(source, f"models[{i}]: expected a mapping with a model key")
        item: dict[str, Any] = {"model": _model_ref(entry["model"], f"models[{i}].model", source)}
        extra = [k for k in entry if k not in ("model", "parameters")]
        if extra:
            raise refuse(source, f"models[{i}].{extra[0]}: unknown key; expected model, parameters")
        params = entry.get("parameters") or {}
        item["parameters"] = {k: _check_setting(v, f"models[{i}].parameters.{k}", source) for k, v in params.items()}
        recipe["models"].append(item)
    global_params = data.get("parameters") or {}
    recipe["parameters"] = {}
    for key, value in global_params.items():
        recipe["parameters"][key] = _check_setting(value, f"parameters.{key}", source)

    dtype_name = data.get("out_dtype") or data.get("dtype") or "float32"
    dtype = _DTYPE_ALIASES.get(str(dtype_name))
    if dtype not in DTYPE_NAMES:
        key = "out_dtype" if data.get("out_dtype") else "dtype"
        raise refuse(source, f"{key} = {dtype_name!r}: expected one of: {', '.join(DTYPE_NAMES)}")
    recipe["dtype"] = dtype

    block = data.get("evomerge") or {}
    if not isinstance(block, dict) or set(block) - {"seed", "options", "base_model"}:
        raise refuse(source, "evomerge: expected a mapping with seed, options, base_model")
    recipe["seed"] = block.get("seed", 0)
    if "base_model" in block:
        recipe["base_model"] = block["base_model"]
    return recipe, (dict(block["options"] or {}) if "options" in block else None)


def _model_ref(value: Any, where: str, source: str | None) -> str:
    if not isinstance(value, str):
        raise refuse(source, f"{where}: expected a path or hub id string, got {type(value).__name__}")
    if "+" in value:
        raise refuse(source, f"{where} = {value!r}: LoRA-augmented model references (model+lora) are not supported")
    return value
