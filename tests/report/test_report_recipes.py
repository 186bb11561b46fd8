"""Recipe pictures from plain dicts: the value each heatmap cell shows (mergekit's rules, by
hand), the group columns, and the data-flow path in every spelling."""

import math
import struct

import numpy as np
import pytest

from evomerge.report.recipes import (
    layer_columns,
    layer_path,
    path_text,
    plot_layer_path,
    plot_recipe_heatmap,
    recipe_panels,
    setting_value,
)

EMBED = ("model.embed_tokens.weight", "transformer.wte.weight")
LAYER = ("model.layers.2.weight",)


def entries(embed, head, layers):
    return [
        {"filter": "embed_tokens", "value": embed},
        {"filter": "lm_head", "value": head},
        {"filter": "model.norm.", "value": head},
        {"value": layers},
    ]


@pytest.mark.parametrize(
    "setting, names, x, want",
    [
        (0.3, EMBED, None, 0.3),
        ([0.0, 1.0, 4.0], LAYER, 0.25, 0.5),  # s = 0.5: halfway between anchors 0 and 1
        ([0.0, 1.0, 4.0], LAYER, 0.75, 2.5),  # s = 1.5
        ([0.0, 1.0, 4.0], LAYER, 1.0, 4.0),
        (entries(0.1, 0.9, 0.5), EMBED, None, 0.1),
        (entries(0.1, 0.9, 0.5), ("lm_head.weight",), None, 0.9),
        (entries(0.1, 0.9, [0.0, 2.0]), LAYER, 0.5, 1.0),  # the fallback's gradient
        ([{"filter": "wte", "value": 0.2}, {"value": 0.7}], EMBED, None, 0.2),  # GPT-2's name matches
        ({"filter": "mlp", "value": 0.4}, LAYER, 0.0, None),  # no entry matches, no fallback
    ],
)
def test_setting_value_by_hand(setting, names, x, want):
    got = setting_value(setting, names, x)
    assert got == pytest.approx(want) if want is not None else got is None


def test_a_gradient_has_no_value_at_embeddings_unless_layerless_ends():
    assert math.isnan(setting_value([0.2, 0.8], EMBED, None))
    recipe = {"models": [{"model": "/m/a", "parameters": {"weight": [0.2, 0.5, 0.8]}}]}
    labels, mat = recipe_panels(recipe, 3)[0]["weight"]
    assert labels == ["a"] and np.isnan(mat[0, [0, 4]]).all() and mat[0, 1:4].tolist() == [0.2, 0.5, 0.8]
    recipe["options"] = {"layerless_gradient": "ends"}  # embeddings x = 0, head x = 1
    assert recipe_panels(recipe, 3)[0]["weight"][1][0].tolist() == [0.2, 0.2, 0.5, 0.8, 0.8]


def test_panels_have_embeddings_every_layer_and_head():
    recipe = {
        "merge_method": "ties",
        "models": [
            {"model": "/m/base"},
            {"model": "/m/math", "parameters": {"weight": entries(0.1, 0.9, [0.2, 0.2, 0.6, 0.6]), "density": 0.5}},
        ],
        "parameters": {"lambda": 1.1},
    }
    panels, L = recipe_panels(recipe, None)  # L from the gradient's length
    assert L == 4 and list(panels) == ["weight", "density", "lambda"]
    assert panels["weight"][0] == ["math"]
    assert panels["weight"][1].tolist() == [[0.1, 0.2, 0.2, 0.6, 0.6, 0.9]]
    assert panels["density"][1].tolist() == [[0.5] * 6]
    assert panels["lambda"][0] == ["all models (global)"]
    groups = layer_columns(panels, L, None)
    assert groups == [range(0, 2), range(2, 4)]
    assert layer_columns(panels, L, [0, 1, 4]) == [range(0, 1), range(1, 2), range(2, 4)]


def test_a_filter_for_part_of_a_layer_gets_its_own_row():
    recipe = {
        "models": [{"model": "/m/x", "parameters": {"weight": [{"filter": "mlp", "value": 0.3}, {"value": 0.7}]}}]
    }
    labels, mat = recipe_panels(recipe, 2)[0]["weight"]
    assert labels == ["x", "x [mlp]"]
    assert mat[0].tolist() == [0.7] * 4
    assert np.isnan(mat[1, [0, 3]]).all() and mat[1, 1:3].tolist() == [0.3, 0.3]


@pytest.mark.parametrize(
    "recipe, want",
    [
        (
            {"path": [{"model": "A", "layer": 0}, {"model": "B", "layer": 3, "scale": 1.5}]},
            [("A", 0, 1.0), ("B", 3, 1.5)],
        ),
        ({"layers": [["A", 1, 0.5], ["B", 2]]}, [("A", 1, 0.5), ("B", 2, 1.0)]),
        (
            {"path": [{"model": "A", "layer": 0, "scale": "x"}, {"model": "A", "layer": 1, "scale": -2}]},
            [("A", 0, 1.0), ("A", 1, 1.0)],
        ),
        ({"path": [{"model": "A"}]}, None),
        ({"path": [["A", "one"]]}, None),
        ({"path": "A0"}, None),
        ({"merge_method": "ties"}, None),
    ],
)
def test_layer_path_spellings(recipe, want):
    assert layer_path(recipe) == want


def test_path_text():
    path = [("A", 0, 1.0), ("B", 3, 1.3), ("A", 3, 1.0)]
    assert path_text(path) == "A0 → B3 ×1.30 → A3"
    assert path_text(path, limit=2) == "A0 → B3 ×1.30 → … (1 more)"


def size(p):
    return struct.unpack(">II", p.read_bytes()[16:24])


@pytest.mark.parametrize("n", [3, 60])
def test_plot_layer_path_short_and_long(tmp_path, n):
    rng = np.random.default_rng(n)
    path = [(str(rng.choice(["A", "B"])), int(rng.integers(0, 32)), float(2 ** rng.uniform(-1, 1))) for _ in range(n)]
    out = plot_layer_path(path, tmp_path / "p.png", source_layers={"A": 32, "B": 32}, embed_from="A")
    w, h = size(out)
    assert 600 <= w <= 1200 and 400 <= h <= 1400


def test_plot_heatmap_for_32_layers_in_8_groups(tmp_path):
    layers = [v for v in np.linspace(0, 1, 8) for _ in range(4)]
    recipe = {"models": [{"model": f"/m/{k}", "parameters": {"weight": entries(0.1, 0.9, layers)}} for k in "ab"]}
    assert len(layer_columns(recipe_panels(recipe, 32)[0], 32, None)) == 8
    out = plot_recipe_heatmap(recipe, 32, tmp_path / "h.png")
    w, h = size(out)
    assert 600 <= w <= 1200 and 200 <= h <= 800
    assert plot_recipe_heatmap({"models": [{"model": "x"}]}, 4, tmp_path / "none.png") is None
