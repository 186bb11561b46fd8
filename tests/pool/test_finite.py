"""The NaN/inf check of source weights: exact (every dtype, every position, no false alarm from
huge finite values), one line naming model, tensor, count and first index, and a clean model is
read once per process."""

import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from evomerge.errors import ModelError
from evomerge.pool import finite


def test_nan_check_reads_each_clean_model_once(tmp_path, tiny_llama_family, monkeypatch):
    """Pool validation of a clean model is remembered (same files, sizes, mtimes) and damage found."""
    model = tmp_path / "m"
    shutil.copytree(tiny_llama_family["base"], model)
    reads = []
    tensors = load_file(model / "model.safetensors")

    def get(name):
        reads.append(name)
        return tensors[name]

    finite.check_finite("m", list(tensors), get, model)
    assert len(reads) == len(tensors)
    finite.check_finite("m", list(tensors), get, model)
    assert len(reads) == len(tensors)  # not read again
    bad = tensors["model.embed_tokens.weight"].clone()
    bad[2, 5] = torch.nan
    bad[4, 0] = torch.inf
    tensors["model.embed_tokens.weight"] = bad
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError) as exc:
        finite.check_finite("m", list(tensors), get, model)
    assert str(exc.value) == (
        "model 'm': tensor 'model.embed_tokens.weight' holds 2 NaN or inf value(s) (the first at index [2, 5]); "
        "the checkpoint is damaged"
    )


def test_huge_finite_values_that_overflow_the_sum_are_not_damage():
    t = torch.full((1000,), 3.0e38, dtype=torch.float32)  # the float32 sum overflows to inf
    finite.check_finite("m", ["w"], lambda n: t)
    t16 = torch.full((70000,), 60000.0, dtype=torch.float16)
    finite.check_finite("m", ["w"], lambda n: t16)


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from([torch.bfloat16, torch.float16, torch.float32, torch.float64]),
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    bad=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from([float("nan"), float("inf"), float("-inf")])), max_size=3
    ),
)
def test_the_check_finds_exactly_the_non_finite_values(dtype, shape, bad):
    t = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    flat = t.reshape(-1)
    for pos, value in bad:
        flat[pos % flat.numel()] = value
    expected = ~torch.isfinite(flat)
    if not bool(expected.any()):
        finite.check_finite("m", ["w"], lambda n: t)
        return
    with pytest.raises(ModelError) as exc:
        finite.check_finite("m", ["w"], lambda n: t)
    first = int(expected.nonzero()[0, 0])
    index = list(torch.unravel_index(torch.tensor(first), t.shape))
    assert str(exc.value) == (
        f"model 'm': tensor 'w' holds {int(expected.sum())} NaN or inf value(s) (the first at index "
        f"{[int(i) for i in index]}); the checkpoint is damaged"
    )


def test_integer_and_empty_tensors_are_skipped():
    finite.check_finite("m", ["i", "e"], lambda n: torch.arange(5) if n == "i" else torch.zeros(0))
