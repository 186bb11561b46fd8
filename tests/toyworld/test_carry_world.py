"""The `carry` preset's pieces: pair filters, the carry target, per-world task lists, frozen groups,
and cache keys that stay put (no test trains the preset itself: minutes of CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from evomerge.errors import ConfigError
from evomerge.toyworld import build_toyworld, builder, preset, tasks
from evomerge.toyworld.settings import DEFAULT_TASKS, Stage

# --- carries and pair filters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [(12, 34, 0), (15, 27, 1), (91, 15, 1), (55, 55, 2), (45, 55, 2), (49, 50, 0), (50, 50, 1), (99, 99, 2)],
)
def test_carries_by_hand(a, b, n):
    assert tasks.carries(a, b) == n


def test_carries_agree_with_column_sums():
    for a, b in tasks.ALL_PAIRS:
        units = a % 10 + b % 10
        tens = a // 10 + b // 10 + units // 10
        assert tasks.carries(a, b) == (units >= 10) + (tens >= 10)


def test_nocarry_component_holds_exactly_the_carry_free_training_sums():
    train_p, _, train_n, _ = tasks.partition(1200, 300, 0)
    easy = tasks.component_examples("L2.addition@nocarry", train_p, train_n)
    hard = tasks.component_examples("L1.addition@carry", train_p, train_n)
    expected = [p for p in train_p if tasks.carries(*p) == 0]
    assert easy == [tasks.example("L2", "addition", p) for p in expected]
    assert len(easy) + len(hard) == len(train_p) and 0.2 < len(easy) / len(train_p) < 0.3
    assert ("1 2 p 3 4 ?", "0 4 6 !") in easy or (12, 34) not in train_p
    for q, a in easy:
        digits = q.split()
        x, y = int(digits[0] + digits[1]), int(digits[3] + digits[4])
        assert tasks.carries(x, y) == 0 and a == tasks.answer("L2", "addition", (x, y))


def test_filtered_translation_keeps_the_other_kinds_whole():
    train_p, _, train_n, _ = tasks.partition(1200, 300, 0)
    whole = tasks.component_examples("X.*", train_p, train_n)
    filtered = tasks.component_examples("X.*@nocarry", train_p, train_n)
    n_easy = sum(tasks.carries(*p) == 0 for p in train_p)
    assert len(whole) - len(filtered) == len(train_p) - n_easy
    assert [e for e in whole if " p " not in e[0]] == [e for e in filtered if " p " not in e[0]]


@pytest.mark.parametrize(
    ("component", "message"),
    [
        ("L1.addition@easy", "unknown pair filter 'easy' in component 'L1.addition@easy'"),
        ("L1.copy@nocarry", "unknown pair filter 'nocarry' in component 'L1.copy@nocarry'"),
    ],
)
def test_bad_filters_are_refused(component, message):
    train_p, _, train_n, _ = tasks.partition(1200, 300, 0)
    with pytest.raises(ValueError, match=message):
        tasks.component_examples(component, train_p, train_n)


def test_below100_and_from100_split_the_sums_at_100():
    train_p, _, train_n, _ = tasks.partition(2000, 300, 0)
    small = tasks.component_examples("L2.addition@below100", train_p, train_n)
    large = tasks.component_examples("L1.addition@from100", train_p, train_n)
    assert len(small) + len(large) == len(train_p)
    assert all(a.startswith("0 ") for _, a in small) and all(a.startswith("1 ") for _, a in large)
    assert small == [tasks.example("L2", "addition", p) for p in train_p if sum(p) < 100]
    # Every carry-free sum is below 100; below 100 also holds units carries (e.g. 15 + 27).
    assert all(sum(p) < 100 for p in train_p if tasks.carries(*p) == 0)
    assert tasks.PAIR_FILTERS["below100"](15, 27) and tasks.carries(15, 27) == 1


def test_hard_target_pool_is_the_part_of_the_target_pool_from_100():
    hard = tasks.task_pool("target_hard", 2000, 300, 0)
    every = {e["id"].removeprefix("target-"): e for e in tasks.task_pool("target", 2000, 300, 0)}
    _, held_p, _, _ = tasks.partition(2000, 300, 0)
    assert len(hard) == sum(a + b >= 100 for a, b in held_p) == 1197
    for e in hard:
        key = e["id"].removeprefix("target_hard-")
        a, b = int(key[-4:-2]), int(key[-2:])
        assert a + b >= 100 and e["answer"] == f"{' '.join(f'{a + b:03d}')} !"
        assert (e["prompt"], e["answer"]) == (every[key]["prompt"], every[key]["answer"])


def test_carry_target_pool_is_the_carrying_part_of_the_target_pool():
    carry = tasks.task_pool("target_carry", 1600, 300, 0)
    every = tasks.task_pool("target", 1600, 300, 0)
    by_id = {e["id"].removeprefix("target-"): e for e in every}
    assert carry and len(carry) < len(every)
    for e in carry:
        x = e["id"].removeprefix("target_carry-")
        same = by_id[x]
        assert (e["prompt"], e["answer"]) == (same["prompt"], same["answer"]) and e["answer"].endswith(" !")
        a, b = int(x[-4:-2]), int(x[-2:])
        assert tasks.carries(a, b) > 0
    n_carry = sum(tasks.carries(int(k[-4:-2]), int(k[-2:])) > 0 for k in by_id)
    assert len(carry) == n_carry


# --- settings ----------------------------------------------------------------------------------------


def test_demo_and_test_keys_are_stable():
    # The keys of worlds users already have cached: adding settings must not move them.
    assert preset("demo").key() == "ee0514d70c94fb01"
    assert preset("test").key() == "8b77455c11d264fd"
    assert preset("demo").tasks == DEFAULT_TASKS


def test_carry_preset_key_is_stable_and_its_settings_change_it():
    s = preset("carry")
    assert s.key() == "a754a979a02b2e88"
    assert s.key() != preset("demo").key()
    assert s.replace(tasks=("math", "lang", "target_hard")).key() != s.key()
    lang = s.experts["lang"]
    frozen = {**s.experts, "lang": Stage(**{**lang.__dict__, "trainable": ("layers.2", "layers.3")})}
    assert s.replace(experts=frozen).key() != s.key()
    assert s.replace(threads=2).key() == s.key()


def test_carry_preset_shape():
    s = preset("carry")
    s.check()
    assert s.target_task == "target_hard" and s.target_task in s.tasks
    sums = sorted(k for k in s.base.mixture if ".addition" in k)
    assert sums == ["L1.addition@below100", "L2.addition@below100"]  # the base meets no sum from 100 up
    assert s.experts["math"].mixture == {"L1.addition": 1.0}
    lang_sums = sorted(k for k in s.experts["lang"].mixture if ".addition" in k)
    assert lang_sums == ["L2.addition@below100"]
    # The target's held-out pool gives the full calibration and (almost) the full validation split.
    pool = len(tasks.task_pool(s.target_task, s.heldout_pairs, s.heldout_numbers, s.data_seed))
    assert pool - s.calibration >= 0.95 * s.validation


def test_settings_round_trip_through_the_manifest_form():
    s = preset("carry")
    lang = Stage(**{**s.experts["lang"].__dict__, "trainable": ("layers.2", "head")})
    s = s.replace(experts={**s.experts, "lang": lang})
    again = type(s).from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.key() == s.key()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tasks": ("math", "lang", "target", "tagret")}, "toy-world setting tasks: unknown task 'tagret'"),
        ({"target_task": "target_hard"}, "target_task 'target_hard' is not one of tasks"),
        ({"expert_skills": {"math": "target_hard"}}, "expert_skills.math: task 'target_hard' is not one of"),
    ],
)
def test_check_names_the_bad_setting(changes, message):
    with pytest.raises(ConfigError, match=message):
        preset("demo").replace(**changes).check()


def test_check_refuses_an_unknown_trainable_group():
    s = preset("test")
    bad = {**s.experts, "math": Stage(mixture={"L1.addition": 1.0}, steps=1, lr=1e-3, trainable=("layers.2",))}
    with pytest.raises(ConfigError, match=r"experts.math.trainable: unknown group 'layers.2'; expected .* layers.0..1"):
        s.replace(experts=bad).check()
    with pytest.raises(ConfigError, match="unknown group"):
        build_toyworld(dir="/nonexistent/never-built", settings=s.replace(experts=bad), log=None)


def test_parameter_groups():
    assert builder.parameter_group("model.embed_tokens.weight") == "embed"
    assert builder.parameter_group("model.layers.3.mlp.down_proj.weight") == "layers.3"
    assert builder.parameter_group("model.norm.weight") == "head"
    assert builder.parameter_group("lm_head.weight") == "head"


# --- a built world with frozen groups and its own task list (tiny) --------------------------------------


def test_frozen_groups_stay_at_the_base_and_tasks_follow_the_settings(tmp_path):
    from safetensors.torch import load_file

    s = preset("test")
    s = s.replace(
        base=Stage(mixture=s.base.mixture, steps=4, lr=1e-3, warmup=2, batch=16),
        experts={
            "math": Stage(mixture={"L1.addition": 1.0}, steps=3, lr=1e-2, warmup=1, batch=16, trainable=("layers.0",)),
            "lang": Stage(mixture=s.experts["lang"].mixture, steps=3, lr=1e-2, warmup=1, batch=16),
        },
        tasks=("math", "lang", "target_carry"),
        target_task="target_carry",
    )
    w = build_toyworld(dir=tmp_path / "w", settings=s, log=None)
    base = load_file(w.base / "model.safetensors")
    math = load_file(w.experts["math"] / "model.safetensors")
    lang = load_file(w.experts["lang"] / "model.safetensors")
    for name in base:
        moved = not torch.equal(base[name], math[name])
        assert moved == (builder.parameter_group(name) == "layers.0"), name
    assert sum(not torch.equal(base[k], lang[k]) for k in base) == len(base)  # nothing frozen: all move
    assert [t["name"] for t in w.tasks] == ["math", "lang", "target_carry"] and w.target_task == "target_carry"
    assert set(w.scores["base"]) == {"math", "lang", "target_carry"}
    carry = next(t for t in w.tasks if t["name"] == "target_carry")
    pool = len(tasks.task_pool("target_carry", s.heldout_pairs, s.heldout_numbers, s.data_seed))
    assert carry["source"]["name"] == "toyworld.target_carry"
    assert carry["splits"]["validation"] == min(s.validation, pool - s.calibration)


def test_carry_experiment_configs_parse():
    from pathlib import Path

    from evomerge.config import load_config, parse_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "experiments" / "toy-carry-ps-cmaes.yaml")
    assert cfg.toyworld.preset == "carry" and cfg.budget.max_evals == 300
    multi = parse_config(
        {"toyworld": {"preset": "carry", "objectives": ["math", "lang", "target_hard"]}, "budget": {"max_evals": 9}}
    )
    assert multi.toyworld.objectives == ["math", "lang", "target_hard"]
