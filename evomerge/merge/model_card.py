"""README.md model card for a merged checkpoint: what was merged, how, and the recipe to redo it."""

from __future__ import annotations

from evomerge.pool.resolve import looks_local


def _is_hub_id(model_id: str) -> bool:
    # Hub metadata may only name hub repositories; a local path there would be a dead link.
    from pathlib import Path

    return not looks_local(model_id) and not Path(model_id).expanduser().exists()


def model_card(recipe, *, recipe_yaml: str, dtype: str, n_params: int, title: str) -> str:
    """Markdown with a Hugging Face metadata header and the recipe YAML verbatim."""
    base = str(recipe.base_model) if recipe.base_model is not None else None
    models = [str(entry.model) for entry in recipe.models]
    sources = list(dict.fromkeys(([base] if base else []) + models))
    hub_sources = [m for m in sources if _is_hub_id(m)]

    lines = ["---"]
    if hub_sources:
        lines.append("base_model:")
        lines += [f"- {m}" for m in hub_sources]
    lines += ["library_name: transformers", "tags:", "- merge", "- evomerge", f"- {recipe.merge_method}", "---", ""]
    lines += [
        f"# {title}",
        "",
        f"A merge of {len(sources)} checkpoint{'s' if len(sources) != 1 else ''} with the "
        f"`{recipe.merge_method}` method, made with evomerge ({n_params:,} parameters, `{dtype}`).",
        "",
        "## Models",
        "",
    ]
    if base:
        lines.append(f"- base: `{base}`")
    lines += [f"- `{m}`" for m in models if m != base]
    lines += [
        "",
        "## Recipe",
        "",
        "Rebuild this checkpoint with `evomerge merge recipe.yaml -o OUT_DIR` on this recipe:",
        "",
        "```yaml",
        recipe_yaml.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)
