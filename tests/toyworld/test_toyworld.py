"""The toy world: data, tokenizer, cache, determinism, fitness tasks and the CLI (test preset)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from evomerge.errors import ConfigError, EvomergeError
from evomerge.toyworld import build_toyworld, builder, cache, preset, tasks, vocab
from evomerge.toyworld.settings import Stage


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return build_toyworld(dir=tmp_path_factory.mktemp("toyworld") / "world", preset="test", log=None)


# --- data ----------------------------------------------------------------------------------------


def test_examples_by_hand():
    assert tasks.example("L1", "addition", (12, 34)) == ("1 2 + 3 4 =", "0 4 6")
    assert tasks.example("L2", "addition", (99, 99)) == ("9 9 p 9 9 ?", "1 9 8 !")
    assert tasks.example("L2", "reverse", 120) == ("r 1 2 0 ?", "0 2 1 !")
    assert tasks.example("L1", "successor", 999) == ("S 9 9 9 =", "0 0 0")
    assert tasks.translation("X", "addition", (10, 11)) == ("X 1 0 p 1 1 ?", "1 0 + 1 1 =")
    assert tasks.translation("Y", "copy", 7) == ("Y C 0 0 7 =", "c 0 0 7 ?")


def test_heldout_inputs_never_in_training_data():
    train_p, held_p, train_n, held_n = tasks.partition(1200, 300, 0)
    assert len(held_p) == 1200 and len(train_p) == 8100 - 1200 and not set(train_p) & set(held_p)
    assert len(held_n) == 300 and not set(train_n) & set(held_n)
    components = ["L1.*", "L2.*", "X.*", "Y.*"]
    seen = set()
    for head in ("L1", "L2", "X", "Y"):
        for kind in tasks.KINDS:
            for q, _ in tasks.component_examples(f"{head}.{kind}", train_p, train_n):
                seen.add(q.removeprefix("X ").removeprefix("Y "))
    assert components  # every head and kind above
    for name in tasks.TASKS:
        pool = tasks.task_pool(name)
        assert pool and len({e["id"] for e in pool}) == len(pool)
        assert not {e["prompt"] for e in pool} & seen, name


def test_partition_is_seeded():
    assert tasks.partition(1200, 300, 0) == tasks.partition(1200, 300, 0)
    assert tasks.partition(1200, 300, 0)[1] != tasks.partition(1200, 300, 1)[1]


# --- settings and cache key ----------------------------------------------------------------------


def test_settings_change_the_key():
    s = preset("test")
    keys = {
        s.key(),
        s.replace(seed=1).key(),
        s.replace(hidden=48).key(),
        s.replace(data_seed=3).key(),
        s.replace(base=Stage(mixture=s.base.mixture, steps=s.base.steps + 1, lr=s.base.lr)).key(),
    }
    assert len(keys) == 5
    assert s.replace(threads=7).key() == s.key()  # speed only
    assert preset("demo").key() != s.key()


def test_unknown_preset_and_setting_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown toy-world preset 'big'; expected one of: demo, carry, test"):
        preset("big")
    with pytest.raises(ConfigError, match="unknown toy-world setting 'hiden'"):
        preset("test", hiden=3)


# --- the built world -----------------------------------------------------------------------------


def test_world_layout_and_manifest(world):
    assert world.built
    assert set(world.experts) == {"math", "lang"} and world.expert_skills == {"math": "math", "lang": "lang"}
    assert world.target_task == "target" and [t["name"] for t in world.tasks] == ["math", "lang", "target"]
    manifest = json.loads((world.root / "manifest.json").read_text())
    assert manifest["key"] == world.key == preset("test").key()
    assert set(manifest["scores"]) == {"base", "math", "lang"}


def test_models_load_with_auto_classes(world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    assert tok.eos_token == "</s>" and tok.padding_side == "left"
    enc = tok(["1 2 p 3 4 ?", "C 1 2 3 ="], padding=True)
    assert enc["input_ids"][0] == [vocab.BOS_ID] + vocab.encode("1 2 p 3 4 ?")
    assert enc["input_ids"][1][0] == vocab.PAD_ID and enc["attention_mask"][1][0] == 0
    assert tok.decode(vocab.encode("0 4 6 !")) == "0 4 6 !"
    for path in [world.base, *world.experts.values()]:
        model = AutoModelForCausalLM.from_pretrained(path)
        assert type(model).__name__ == "LlamaForCausalLM"
        assert model.config.num_hidden_layers == preset("test").layers
    experts = [AutoModelForCausalLM.from_pretrained(p).state_dict() for p in world.experts.values()]
    base = AutoModelForCausalLM.from_pretrained(world.base).state_dict()
    for sd in experts:  # fine-tuning moved the weights: the task vectors are real
        assert any(not torch.equal(sd[k], base[k]) for k in base)


def test_forced_exact_match_equals_greedy_generation(world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evomerge.toyworld.train import forced_exact_match

    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(world.experts["lang"]).eval()
    pool = tasks.task_pool("lang")[:40]
    forced = forced_exact_match(model, [(e["prompt"], e["answer"]) for e in pool]).tolist()
    greedy = []
    for e in pool:  # one at a time: no padding involved
        ids = tok(e["prompt"], return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1] :].tolist()
        text = tok.decode(out[: out.index(vocab.EOS_ID)]) if vocab.EOS_ID in out else None
        greedy.append(float(text == e["answer"]))
    assert forced == greedy
    assert sum(forced) > 0  # the test world's lang expert has learnt something to compare


def test_fitness_tasks_load_and_splits_are_disjoint(world):
    import evomerge.fitness as fitness

    for cfg in world.tasks:
        task = fitness.load_task(cfg)
        cal, val = task.examples("calibration"), task.examples("validation")
        assert len(cal) == cfg["splits"]["calibration"] and len(val) == cfg["splits"]["validation"]
        assert not {e.id for e in cal} & {e.id for e in val}
        pool = fitness.generators.get(cfg["source"]["name"])(**cfg["source"]["params"])
        assert pool == tasks.task_pool(cfg["name"], **cfg["source"]["params"])


def test_cache_hit_does_not_retrain(world, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("retrained a cached world")

    monkeypatch.setattr(builder, "build_models", no_training)
    again = build_toyworld(dir=world.root, preset="test", log=None)
    assert not again.built and again.root == world.root and again.key == world.key


def test_cli_finds_the_cached_world(world, capsys, monkeypatch):
    from evomerge.cli import main

    monkeypatch.setattr(builder, "build_models", lambda *a, **k: pytest.fail("retrained"))
    assert main(["toyworld", "--preset", "test", "--dir", str(world.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["built"] is False and out["experts"]["math"] == str(world.experts["math"])
    assert main(["toyworld", "--preset", "test", "--dir", str(world.root)]) == 0
    assert "found in cache" in capsys.readouterr().out


# --- determinism, rebuilds, locking (on a world a few steps long) ----------------------------------


def _micro():
    s = preset("test")
    return s.replace(
        base=Stage(mixture=s.base.mixture, steps=4, lr=1e-3, warmup=2, batch=16),
        experts={n: Stage(mixture=st.mixture, steps=3, lr=1e-3, warmup=1, batch=16) for n, st in s.experts.items()},
    )


def test_build_is_deterministic_for_a_seed(tmp_path):
    from safetensors.torch import load_file

    a = build_toyworld(dir=tmp_path / "a", settings=_micro(), log=None)
    b = build_toyworld(dir=tmp_path / "b", settings=_micro(), log=None)
    c = build_toyworld(dir=tmp_path / "c", settings=_micro().replace(seed=1), log=None)
    for rel in ["base", "experts/math", "experts/lang"]:
        ta, tb = load_file(a.root / rel / "model.safetensors"), load_file(b.root / rel / "model.safetensors")
        assert all(torch.equal(ta[k], tb[k]) for k in ta), rel
    tc = load_file(c.root / "base" / "model.safetensors")
    assert any(not torch.equal(ta[k], tc[k]) for k in ta)


def test_incomplete_world_is_rebuilt_and_foreign_dir_refused(tmp_path):
    w = build_toyworld(dir=tmp_path / "w", settings=_micro(), log=None)
    (w.experts["math"] / "model.safetensors").unlink()
    again = build_toyworld(dir=tmp_path / "w", settings=_micro(), log=None)
    assert again.built and (again.experts["math"] / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".w.tmp-*")) and not list(tmp_path.glob(".w.old-*"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(EvomergeError, match="exists and is not a toy world"):
        build_toyworld(dir=foreign, settings=_micro(), log=None)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_failed_build_leaves_nothing_behind(tmp_path):
    def broken(tmp):
        (tmp / "half").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.build_atomically(tmp_path / "w", "k", broken)
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w.tmp-*"))


def test_concurrent_builders_build_once(tmp_path):
    calls = []

    def slow_build(tmp):
        calls.append(1)
        time.sleep(0.3)
        (tmp / "base").mkdir()
        for f in cache.MODEL_FILES:
            (tmp / "base" / f).write_text("{}")
        (tmp / cache.MANIFEST).write_text(json.dumps({"key": "k", "base": "base", "experts": {}}))

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.build_atomically(tmp_path / "w", "k", slow_build)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(results) == [False, True]


def test_open_toyworld_reads_a_built_world_and_names_a_folder_that_is_not_one(world, tmp_path):
    from evomerge.errors import ConfigError
    from evomerge.toyworld import open_toyworld

    again = open_toyworld(world.root, log=None)
    assert (again.key, again.base, again.built) == (world.key, world.base, False)
    with pytest.raises(ConfigError) as exc:
        open_toyworld(tmp_path)
    assert str(exc.value) == f"{tmp_path}: no toy world here (no readable manifest.json)"
