"""The memory planner: decisions for given sizes (no machine needed), its one-line refusals, and the
readers of free memory."""

from __future__ import annotations

import pytest

from evomerge.errors import ModelError
from evomerge.merge.placement import (
    GiB,
    Memory,
    MemoryGuard,
    ModelSize,
    host_free_bytes,
    plan_placement,
)

# Llama-2/Mistral-7B-like: 7.24B float entries, the largest tensor the 32000 × 4096 embedding
SEVEN_B = ModelSize(params=7_241_732_096, largest=32_000 * 4096)
# TinyLlama-1.1B: 1.10B entries, embedding (and separate head) 32000 × 2048
ONE_B = ModelSize(params=1_100_048_384, largest=32_000 * 2048)
CHUNK_GPU, CHUNK_CPU = 1 << 24, 1 << 16


def gpu_need(size, n, b, total):
    """The module docstring's table, by hand: resident and offloaded bytes on the device, host bytes."""
    live = size.params * b
    inputs = (n + 1) * size.params * b
    staging = 2 * (n + 1) * size.largest * b
    scratch = size.largest * 4 + (n + 11) * min(size.largest, CHUNK_GPU) * 4  # output; chunks (with draws)
    reserve = max(2 * GiB, total // 10)
    return live + inputs + scratch + reserve, live + staging + scratch + reserve, inputs + GiB


def plan(size, n, *, device="cuda:0", b=2, memory="auto", search_cache="auto", sampling=True, **free):
    return plan_placement(
        size,
        experts=n,
        dtype_bytes=b,
        device=device,
        memory=memory,
        search_cache=search_cache,
        free=Memory(**free),
        sampling=sampling,
    )


def test_a_7b_merge_stays_on_an_80gb_gpu_with_three_experts_and_is_offloaded_with_four():
    total = 80 * GiB
    one = plan(SEVEN_B, 1, device_free=78 * GiB, device_total=total, host_free=400 * GiB)
    resident, _, _ = gpu_need(SEVEN_B, 1, 2, total)
    assert (one.mode, one.store, one.stream, one.pin) == ("gpu", "cuda:0", False, False)
    assert one.device_bytes == resident and one.host_bytes == 0
    assert one.search_cache_bytes == (78 * GiB - resident) // 2

    three = plan(SEVEN_B, 3, device_free=78 * GiB, device_total=total, host_free=400 * GiB)
    resident, _, _ = gpu_need(SEVEN_B, 3, 2, total)
    assert resident <= 78 * GiB and three.mode == "gpu"  # 72.4 GB of weights; DARE's draws are chunks

    four = plan(SEVEN_B, 4, device_free=78 * GiB, device_total=total, host_free=400 * GiB)
    resident, streamed, host = gpu_need(SEVEN_B, 4, 2, total)
    assert resident > 78 * GiB  # 86.9 GB of weights alone
    assert (four.mode, four.store, four.stream, four.pin) == ("offload", "cpu", True, True)
    assert (four.device_bytes, four.host_bytes) == (streamed, host)
    assert four.search_cache_bytes == (78 * GiB - streamed) // 2
    # an H200 holds everything
    h200 = plan(SEVEN_B, 3, device_free=139 * GiB, device_total=140 * GiB, host_free=400 * GiB)
    assert h200.mode == "gpu"


def test_a_24gb_card_runs_7b_offloaded_when_the_host_holds_the_task_vectors():
    placement = plan(SEVEN_B, 3, device_free=23 * GiB, device_total=24 * GiB, host_free=64 * GiB)
    _, streamed, host = gpu_need(SEVEN_B, 3, 2, 24 * GiB)
    assert placement.mode == "offload" and placement.device_bytes == streamed <= 23 * GiB
    assert placement.host_bytes == host


def test_when_nothing_fits_one_line_says_what_each_mode_needs():
    with pytest.raises(ModelError) as exc:
        plan(SEVEN_B, 3, device_free=23 * GiB, device_total=24 * GiB, host_free=32 * GiB)
    resident, streamed, host = gpu_need(SEVEN_B, 3, 2, 24 * GiB)
    assert str(exc.value) == (
        "evaluator.memory: auto: a model of 7.24B parameters with 3 expert(s) in 16-bit weights fits neither way: "
        f"on the GPU it needs {resident / GiB:.1f} GiB on cuda:0; offloaded {streamed / GiB:.1f} GiB on cuda:0 and "
        f"{host / GiB:.1f} GiB of host memory; cuda:0 has 23.0 GiB free, the host 32.0 GiB"
    )
    assert "\n" not in str(exc.value)


def test_a_forced_mode_that_does_not_fit_is_refused_with_a_hint():
    with pytest.raises(ModelError, match=r"^evaluator\.memory: gpu: .* \(evaluator\.memory: offload would fit\)$"):
        plan(SEVEN_B, 3, memory="gpu", device_free=23 * GiB, device_total=24 * GiB, host_free=64 * GiB)
    with pytest.raises(ModelError, match=r"^evaluator\.memory: offload: a model of 7\.24B .* the host 8\.0 GiB$"):
        plan(SEVEN_B, 3, memory="offload", device_free=70 * GiB, device_total=80 * GiB, host_free=8 * GiB)
    forced = plan(SEVEN_B, 1, memory="offload", device_free=70 * GiB, device_total=80 * GiB, host_free=64 * GiB)
    assert forced.mode == "offload"  # fits on the GPU too, but offload was asked for


def test_on_a_cpu_everything_is_host_memory():
    placement = plan(ONE_B, 3, device="cpu", host_free=20 * GiB)
    live, inputs = ONE_B.params * 2, 4 * ONE_B.params * 2
    scratch = ONE_B.largest * 4 + 14 * CHUNK_CPU * 4  # output; chunks (DARE's draws included)
    need = live + inputs + scratch + GiB
    assert (placement.mode, placement.store, placement.stream) == ("gpu", "cpu", False)
    assert placement.device_bytes == need and placement.host_bytes == 0
    assert placement.search_cache_bytes == (20 * GiB - need) // 2
    # offload on a CPU: the streaming path, the same memory plus its staging buffers
    streamed = plan(ONE_B, 3, device="cpu", memory="offload", host_free=20 * GiB)
    assert streamed.stream and not streamed.pin and streamed.device_bytes == need + 2 * 4 * ONE_B.largest * 2
    with pytest.raises(ModelError) as exc:
        plan(ONE_B, 3, device="cpu", host_free=8 * GiB)
    assert str(exc.value) == (
        "evaluator.memory: a model of 1.10B parameters with 3 expert(s) in 16-bit weights needs "
        f"{need / GiB:.1f} GiB of memory on cpu (live model {live / GiB:.1f} GiB, base and task vectors "
        f"{inputs / GiB:.1f} GiB, merge scratch and reserve {(scratch + GiB) / GiB:.1f} GiB); 8.0 GiB is free"
    )


def test_search_cache_budget_is_half_the_rest_capped_or_off():
    auto = plan(ONE_B, 2, device="cpu", host_free=40 * GiB)
    capped = plan(ONE_B, 2, device="cpu", host_free=40 * GiB, search_cache=GiB)
    off = plan(ONE_B, 2, device="cpu", host_free=40 * GiB, search_cache="off")
    assert auto.search_cache_bytes == (40 * GiB - auto.device_bytes) // 2 > GiB
    assert capped.search_cache_bytes == GiB and off.search_cache_bytes == 0
    tight = plan(ONE_B, 2, device="cpu", host_free=auto.device_bytes)  # nothing left
    assert tight.search_cache_bytes == 0
    unknown = plan(ONE_B, 2, device="cpu", host_free=None, search_cache=3 * GiB)
    assert unknown.search_cache_bytes == 3 * GiB


def test_an_unknown_mode_is_one_line():
    with pytest.raises(ModelError, match=r"^evaluator\.memory: expected auto, gpu or offload, got 'disk'$"):
        plan(ONE_B, 1, device="cpu", memory="disk", host_free=GiB)


def test_free_memory_readers_and_the_guard():
    free = host_free_bytes()
    assert free is None or free > 0
    assert MemoryGuard("cpu", 0)(0)
    assert not MemoryGuard("cpu", 1 << 62)(1) or free is None


def test_describe_is_one_line():
    text = plan(SEVEN_B, 3, device_free=23 * GiB, device_total=24 * GiB, host_free=64 * GiB).describe()
    assert text.startswith("memory plan: offload — live model on cuda:0, base and task vectors in pinned host memory")
    assert "\n" not in text


@pytest.mark.parametrize(
    "given, expected",
    [
        ({}, ("auto", "auto")),
        ({"memory": "offload", "search_cache": "off"}, ("offload", "off")),
        ({"search_cache": "8GiB"}, ("auto", 8 * GiB)),
        ({"search_cache": "500MB"}, ("auto", 500_000_000)),
        ({"search_cache": 12345}, ("auto", 12345)),
    ],
)
def test_the_run_config_sets_memory_and_the_search_cache(given, expected):
    from evomerge.config import parse_config

    ev = parse_config({"toyworld": {"preset": "test"}, "budget": {"max_evals": 1}, "evaluator": given}).evaluator
    assert (ev.memory, ev.search_cache) == expected


@pytest.mark.parametrize(
    "given, line",
    [
        (
            {"memory": "disk"},
            "run.yaml: key 'evaluator.memory': Input should be 'auto', 'gpu' or 'offload' (got 'disk')",
        ),
        (
            {"search_cache": "lots"},
            "run.yaml: key 'evaluator.search_cache': expected auto, off or a size like 8GiB, 500MB; got 'lots'",
        ),
        ({"search_cache": -1}, "run.yaml: key 'evaluator.search_cache': expected auto, off or a size in bytes, got -1"),
    ],
)
def test_bad_memory_settings_are_one_line(given, line):
    from evomerge.config import parse_config
    from evomerge.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        parse_config({"toyworld": {"preset": "test"}, "budget": {"max_evals": 1}, "evaluator": given}, "run.yaml")
    assert str(exc.value) == line


def test_a_sampling_method_adds_three_chunks_and_nothing_tensor_sized():
    dense = plan(SEVEN_B, 3, device_free=23 * GiB, device_total=24 * GiB, host_free=64 * GiB, sampling=False)
    sampled = plan(SEVEN_B, 3, device_free=23 * GiB, device_total=24 * GiB, host_free=64 * GiB)
    assert sampled.device_bytes - dense.device_bytes == 3 * CHUNK_GPU * 4  # DARE's draws, chunk by chunk
    live, staging = SEVEN_B.params * 2, 2 * 4 * SEVEN_B.largest * 2
    assert dense.device_bytes == live + staging + SEVEN_B.largest * 4 + 11 * CHUNK_GPU * 4 + int(2.4 * GiB)


def test_staging_holds_the_largest_tensor_once_and_the_next_largest_for_prefetching():
    size = ModelSize(params=8_030_261_248, largest=128_256 * 4096, second=4096 * 14336)  # Llama-3-8B
    placement = plan(size, 3, memory="offload", device_free=40 * GiB, device_total=48 * GiB, host_free=200 * GiB)
    live = size.params * 2
    staging = 4 * (size.largest + size.second) * 2
    scratch = size.largest * 4 + 14 * CHUNK_GPU * 4
    assert placement.device_bytes == live + staging + scratch + int(4.8 * GiB)
