"""Data-flow path encodings (``space.encoding``): indicator and choice genes, categorical genes."""

import numpy as np
import pytest

from evomerge.errors import ConfigError
from evomerge.merge.recipes import DataFlowRecipe
from evomerge.space import DataFlowSpace, JointSpace, ParameterSpace
from evomerge.space.base import category_of, category_value, gene_categories


def _recipe(path, embed_from="A"):
    steps = [{"model": m, "layer": l, "scale": s} for m, l, s in path]
    return DataFlowRecipe.model_validate({"sources": {"A": "A", "B": "B"}, "embed_from": embed_from, "path": steps})


def test_category_convention():
    # category k of K is the interval (k/K, (k+1)/K]; 0 and below are category 0, above 1 the last
    assert [category_of(x, 2) for x in (-1, 0, 0.5, 0.5000001, 1, 3)] == [0, 0, 0, 1, 1, 1]
    assert [category_of(x, 3) for x in (0, 1 / 3, 0.34, 2 / 3, 0.67, 1)] == [0, 0, 1, 1, 2, 2]
    for k in (2, 3, 5):
        assert [category_of(category_value(c, k), k) for c in range(k)] == list(range(k))
    assert category_value(1, 3) == pytest.approx(0.5)


def test_choice_layout_dims_names_categories():
    s = DataFlowSpace({"A": 3, "B": 2}, repeats=2, encoding="choice", scale_mode="per_layer")
    # depth 3 (A has 3 layers): 3 genes per repetition; depth 2 offers only A.2
    assert (s.M, s.T, s.dim) == (5, 6, 6 + 5)
    assert s.names[:4] == ["r0/d0/skip|A|B", "r0/d1/skip|A|B", "r0/d2/skip|A", "r1/d0/skip|A|B"]
    assert s.names[6] == "scale/A.0"
    assert s.categories == [3, 3, 2, 3, 3, 2] + [0] * 5
    assert gene_categories(s).tolist() == s.categories
    assert s.group_boundaries == [0, 3, 6, 11]
    assert s.describe()["encoding"] == "choice"
    ind = DataFlowSpace({"A": 3, "B": 2}, repeats=2, scale_mode="none")
    assert ind.categories == [2] * 10 and ind.describe()["encoding"] == "indicator"


def test_choice_x0_is_model_a():
    s = DataFlowSpace({"A": 4, "B": 4}, repeats=2, encoding="choice")
    assert s.to_recipe(s.x0).layer_sequence() == [("A", i) for i in range(4)]
    assert s.to_recipe(s.x0).scales() == [1.0] * 4
    # fixed ends: A.0 and A.3 come from the ends, the genes pick A.1 and A.2 in repetition 0
    assert [category_of(v, 3) for v in s.x0[: s.T]] == [0, 1, 1, 0, 0, 0, 0, 0]
    free = DataFlowSpace({"A": 4, "B": 4}, repeats=2, encoding="choice", fix_ends=False, embed_from="B")
    assert free.to_recipe(free.x0).layer_sequence() == [("B", i) for i in range(4)]
    assert [category_of(v, 3) for v in free.x0[: free.T]] == [2, 2, 2, 2, 0, 0, 0, 0]


def test_choice_hand_computed_genome():
    s = DataFlowSpace({"A": 4, "B": 4}, repeats=2, encoding="choice", scale_mode="per_layer")
    x = np.full(s.dim, 0.5)  # every scale gene 0.5: scale sqrt(0.5·2) = 1
    x[: s.T] = [0.1, 0.9, 0.5, 0.0, 0.8, 0.2, 0.7, 0.3]  # r0: skip B.1 A.2 skip | r1: B.0 skip B.2 skip
    x[s.T + 4 + 1] = 1.0  # scale of B.1 = 2
    r = s.to_recipe(x)
    assert r.layer_sequence() == [("A", 0), ("B", 1), ("A", 2), ("B", 0), ("B", 2), ("A", 3)]
    assert r.scales() == pytest.approx([1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    assert s.on_slots(x) == [1, 2, 4, 6]
    # no fixed ends and nothing chosen: the gene nearest to choosing gives its first layer
    free = DataFlowSpace({"A": 2, "B": 2}, repeats=1, encoding="choice", fix_ends=False, scale_mode="none")
    assert free.to_recipe(np.array([0.1, 0.3])).layer_sequence() == [("A", 1)]


def _same(a, b):
    assert a.layer_sequence() == b.layer_sequence()
    assert a.scales() == pytest.approx(b.scales(), rel=1e-12)


def test_choice_from_recipe_outside_image():
    s = DataFlowSpace({"A": 3, "B": 3}, repeats=1, encoding="choice", sources={"A": "A", "B": "B"})
    # B.1 at depth 1 then A.1 at depth 1 again: a second repetition would be needed
    with pytest.raises(ConfigError, match=r"^data-flow recipe: path step 2 \(A.1\) does not fit in 1 repetitions"):
        s.from_recipe(_recipe([("A", 0, 1), ("B", 1, 1), ("A", 1, 1), ("A", 2, 1)]))
    # the layer order is the depth order: B.2 then B.1 does not fit in one repetition either
    with pytest.raises(ConfigError, match=r"path step 2 \(B.1\) does not fit"):
        s.from_recipe(_recipe([("A", 0, 1), ("B", 2, 1), ("B", 1, 1), ("A", 2, 1)]))
    two = DataFlowSpace({"A": 3, "B": 3}, repeats=2, encoding="choice", sources={"A": "A", "B": "B"})
    r = _recipe([("A", 0, 1), ("B", 2, 1), ("B", 1, 1), ("A", 2, 1)])
    _same(two.to_recipe(two.from_recipe(r)), r)


def test_encoding_option_is_checked():
    with pytest.raises(ConfigError) as exc:
        DataFlowSpace({"A": 2}, encoding="slots")
    assert str(exc.value) == "key 'space.encoding': Input should be 'indicator' or 'choice' (got 'slots')"


def test_joint_space_declares_the_dfs_half_categorical():
    ps = ParameterSpace("task_arithmetic", "x/base", ["x/e1", "x/e2"], 4, layer_groups=2)
    dfs = DataFlowSpace({"A": 4, "B": 4}, repeats=1, encoding="choice", scale_mode="none")
    joint = JointSpace(ps, dfs, ps_source="A")
    assert gene_categories(joint).tolist() == [0] * ps.dim + [3] * 4
