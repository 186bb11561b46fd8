"""The inference engine: the HF engine's generations and teacher-forced scores equal an independent
greedy decoder and hand computations, across generation paths (``model.generate`` vs the loop),
``logits_to_keep`` on and off, tiny Llama and GPT-2 models, data-flow path models and the toy world."""

import pytest
import torch
from conftest import random_model

from evomerge.errors import ConfigError
from evomerge.fitness import Fitness, parse_fitness_config
from evomerge.fitness.engines import ENGINES, HFEngine, HFOptions, InferenceEngine, build_engine
from evomerge.fitness.engines.base import finish_generation, stop_index
from evomerge.merge.dataflow.path_model import build_path_model
from evomerge.merge.recipes.dataflow import DataFlowRecipe

PROMPTS = ["1+2=", "45+7", "w", "99+98", "x", "12+34=", "7", "hellu", "5+5=", "v", "6", "abc+y", "3?", "q-q"]
EOS = 2


def enc(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def naive_greedy(model, tok, prompt, *, max_new_tokens, stop=()):
    """The reference decoder: one prompt alone, no padding, no cache, the whole sequence each step."""
    ids, out = list(prompt), []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        out.append(nxt)
        ids.append(nxt)
        if nxt == EOS or (stop and any(s in tok.decode(out) for s in stop)):
            break
    return out


def path_model(arch):
    a, b = random_model(arch, seed=1), random_model(arch, seed=2)
    recipe = DataFlowRecipe.model_validate(
        {
            "sources": {"a": "unused-a", "b": "unused-b"},
            "embed_from": "a",
            "path": [{"model": "a", "layer": 0}, {"model": "b", "layer": 1, "scale": 0.8}, {"model": "a", "layer": 0}],
        }
    )
    return build_path_model(recipe, {"a": a, "b": b}).eval()


MODELS = ["llama", "gpt2", "path-llama", "path-gpt2"]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    name = request.param
    return path_model(name.split("-")[1]) if name.startswith("path-") else random_model(name)


@pytest.mark.parametrize("stop", [(), ("7",), ("yz", "3")])
def test_generation_paths_equal_the_reference_decoder(model, tok, stop):
    prompts = enc(tok, PROMPTS)
    want = [naive_greedy(model, tok, p, max_new_tokens=8, stop=stop) for p in prompts]
    want_texts = [finish_generation(tok, ids, {EOS}, stop)[0] for ids in want]
    assert len(set(want_texts)) > 6, "the random model should produce varied outputs"
    for mode in ("generate", "loop"):
        engine = HFEngine(model, tok, HFOptions(generation=mode))
        assert engine.generation_mode() == mode
        for bs in (1, 5, 14):
            got = engine.generate(prompts, max_new_tokens=8, stop_strings=stop, batch_size=bs)
            assert got.ids == want and got.texts == want_texts, (mode, bs)
            assert got.tokens == sum(len(p) + len(w) for p, w in zip(prompts, want))


def test_stop_strings_the_vocabulary_cannot_spell(tok):
    # "\n" is no character of the toy vocabulary: transformers' StopStringCriteria refuses it,
    # the engine falls back to a decoded-text criterion and both paths still agree.
    llama = random_model("llama")
    prompts = enc(tok, PROMPTS)
    free = HFEngine(llama, tok).generate(prompts, max_new_tokens=6)
    stop = ["\n", free.texts[0][2]]  # a character the model does produce
    a = HFEngine(llama, tok, HFOptions(generation="generate")).generate(prompts, max_new_tokens=6, stop_strings=stop)
    b = HFEngine(llama, tok, HFOptions(generation="loop")).generate(prompts, max_new_tokens=6, stop_strings=stop)
    assert a == b and len(a.ids[0]) <= 3 and a.texts[0] == free.texts[0][: free.texts[0].index(stop[1])]


def test_stop_index_matches_a_step_by_step_decoder(tok):
    ids = tok("ab12cd</s>ef", add_special_tokens=False)["input_ids"]
    assert ids[6] == EOS

    def step_by_step(stop):
        for k in range(1, len(ids) + 1):
            if ids[k - 1] == EOS:
                return k
            if any(s in tok.decode(ids[:k]) for s in stop):
                return k
        return len(ids)

    for stop in [(), ("1",), ("12",), ("2c",), ("d",), ("</s>",), ("e",), ("zz",), ("cd", "b")]:
        assert stop_index(tok, ids, {EOS}, stop) == step_by_step(stop), stop
    assert finish_generation(tok, ids, {EOS}, ("c",)) == ("ab12", ids[:5])
    assert finish_generation(tok, ids, {EOS}, ()) == ("ab12cd", ids[:7])


def reference_logprobs(model, ctx, cont):
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ctx + cont])).logits[0].float(), -1)
    rows = lp[len(ctx) - 1 : len(ctx) + len(cont) - 1]
    return rows.gather(1, torch.tensor(cont)[:, None])[:, 0], rows.argmax(-1)


def test_teacher_forcing_with_and_without_logits_to_keep(model, tok):
    pairs = [("12+3=", "15"), ("12+3=", "51"), ("ab", "c"), ("ab", "cde"), ("7", "77"), ("hello", " world")]
    requests = [(a, b) for a, b in zip(enc(tok, [p for p, _ in pairs]), enc(tok, [c for _, c in pairs]))]
    results = {}
    for keep in (False, True):
        engine = HFEngine(model, tok, HFOptions(logits_to_keep=keep))
        for bs in (1, 4):
            ll = engine.loglikelihood(requests, batch_size=bs)
            fm = engine.forced_exact_match(requests, batch_size=bs)
            results[keep, bs] = (ll, fm)
            assert fm.matches == [item.greedy for item in ll.items]
            assert ll.tokens == fm.tokens == sum(len(a) + len(b) for a, b in requests)
            for (ctx, cont), item in zip(requests, ll.items):
                picked, argmax = reference_logprobs(model, ctx, cont)
                assert item.total == pytest.approx(float(picked.sum()), abs=1e-5)
                assert item.mean == pytest.approx(float(picked.mean()), abs=1e-5)
                assert item.length == len(cont) and item.greedy == torch.equal(argmax, torch.tensor(cont))
    # batch by batch, the projection of the kept positions alone is bit-identical to the full one
    # keeping only the scored positions changes the shape of the LM head's matrix product, not what
    # it computes: argmax decisions are identical, log-probabilities agree to float32 rounding
    for bs in (1, 4):
        (ll_off, fm_off), (ll_on, fm_on) = results[False, bs], results[True, bs]
        assert fm_on == fm_off and [i.greedy for i in ll_on.items] == [i.greedy for i in ll_off.items]
        for on, off in zip(ll_on.items, ll_off.items):
            assert on.total == pytest.approx(off.total, rel=1e-6) and on.mean == pytest.approx(off.mean, rel=1e-6)


def test_greedy_continuations_are_forced_matches(model, tok):
    prompts = enc(tok, PROMPTS)
    gen = HFEngine(model, tok).generate(prompts, max_new_tokens=4)
    requests = [(p, ids) for p, ids in zip(prompts, gen.ids)]
    wrong = [(p, ids[:-1] + [(ids[-1] + 1) % 40 + 4]) for p, ids in zip(prompts, gen.ids)]
    out = HFEngine(model, tok).forced_exact_match(requests + wrong, batch_size=6)
    assert out.matches == [True] * len(prompts) + [False] * len(prompts)


def test_rebind_reuses_one_engine(tok):
    llama, path = random_model("llama"), path_model("llama")
    prompts = enc(tok, PROMPTS[:6])
    engine = HFEngine(llama, tok)
    first = engine.generate(prompts, max_new_tokens=5)
    engine.rebind(path)
    assert engine.model is path and engine.tokenizer is tok
    assert engine.generate(prompts, max_new_tokens=5) == HFEngine(path, tok).generate(prompts, max_new_tokens=5)
    engine.rebind(llama, tok)
    assert engine.generate(prompts, max_new_tokens=5) == first


def test_module_without_generate_or_cache_uses_the_loop(tok):
    llama = random_model("llama")

    class Bare(torch.nn.Module):  # no generate(), no KV cache, no logits_to_keep
        def __init__(self):
            super().__init__()
            self.inner = llama

        def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            return (out.logits,)

    prompts = enc(tok, PROMPTS)
    bare = HFEngine(Bare(), tok)
    assert bare.generation_mode() == "loop"
    assert bare.generate(prompts, max_new_tokens=5, batch_size=4) == HFEngine(llama, tok).generate(
        prompts, max_new_tokens=5, batch_size=4
    )
    requests = [(p, [5, 6]) for p in prompts]
    assert bare.loglikelihood(requests) == HFEngine(llama, tok, HFOptions(logits_to_keep=False)).loglikelihood(requests)
    with pytest.raises(ConfigError, match=r"^engine.generation: generate, but Bare has no generate\(\)$"):
        HFEngine(Bare(), tok, HFOptions(generation="generate")).generate(prompts, max_new_tokens=2)


def test_static_cache_and_compile_options_on_cpu(tok):
    llama = random_model("llama")
    prompts = enc(tok, PROMPTS)
    want = HFEngine(llama, tok).generate(prompts, max_new_tokens=6, batch_size=5)
    assert HFEngine(llama, tok, HFOptions(cache="static")).generate(prompts, max_new_tokens=6, batch_size=5) == want
    # compile: a static cache and a CompileConfig; transformers compiles on CUDA only, so on CPU this
    # checks the option's path runs and changes nothing
    assert HFEngine(llama, tok, HFOptions(compile=True)).generate(prompts, max_new_tokens=6, batch_size=5) == want


def test_engine_config_section():
    base = {"tasks": [{"name": "t", "source": {"type": "generator", "name": "g"}}]}
    assert parse_fitness_config(base).engine == HFOptions()
    cfg = parse_fitness_config({**base, "engine": {"type": "hf", "generation": "loop", "logits_to_keep": False}})
    assert cfg.engine == HFOptions(generation="loop", logits_to_keep=False)
    assert parse_fitness_config({**base, "engine": {"cache": "static"}}).engine == HFOptions(cache="static")
    assert isinstance(build_engine(cfg.engine, None, None), HFEngine) and ENGINES.names() == ["hf"]
    for engine, message in [
        ({"type": "vllm"}, "engine: unknown inference engine 'vllm' (known: hf)"),
        ({"type": "hff"}, "engine: unknown inference engine 'hff' (did you mean 'hf'?)"),
        ({"type": "hf", "generaton": "loop"}, "engine.generaton: unknown key (did you mean 'generation'?)"),
        ({"type": "hf", "cache": "paged"}, "engine.cache = 'paged': Input should be 'dynamic' or 'static'"),
        ("hf", "engine = 'hf': Input should be a valid dictionary or instance of HFOptions"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_fitness_config({**base, "engine": engine})
        assert str(info.value) == message


def test_fitness_evaluate_takes_an_engine_or_a_model(tok):
    from evomerge.fitness import generators

    rows = [{"id": f"q{i}", "prompt": p, "answer": p[::-1][:2]} for i, p in enumerate(PROMPTS)]
    generators.register("test.engine_rows", lambda: rows)
    try:
        fit = Fitness.from_dict(
            {
                "tasks": [
                    {
                        "name": t,
                        "source": {"type": "generator", "name": "test.engine_rows"},
                        "scorer": scorer,
                        "splits": {"calibration": 10, "seed": 1},
                    }
                    for t, scorer in [("gen", {"type": "exact_match", "max_new_tokens": 3}), ("nll", {"type": "nll"})]
                ],
                "engine": {"type": "hf", "generation": "loop"},
            }
        )
        llama, path = random_model("llama"), path_model("llama")
        a = fit.evaluate(llama, tok, "validation")
        engine = fit.engine(llama, tok)
        assert isinstance(engine, InferenceEngine) and engine.options.generation == "loop"
        b = fit.evaluate(engine, "validation")
        c = fit.evaluate(HFEngine(llama, tok, HFOptions(generation="generate")), split="validation")
        for x in (b, c):
            assert {n: t.scores for n, t in x.tasks.items()} == {n: t.scores for n, t in a.tasks.items()}
            assert x.tasks["gen"].outputs == a.tasks["gen"].outputs
        assert fit.engine(path, tok) is engine and engine.model is path  # one engine per Fitness, rebound
        with pytest.raises(TypeError, match="an engine carries its own tokenizer"):
            fit.evaluate(engine, tok, "validation")
    finally:
        generators.unregister("test.engine_rows")


def test_continuous_batching_option_on_cpu(tok):
    llama = random_model("llama")
    prompts = enc(tok, PROMPTS)
    engine = HFEngine(llama, tok, HFOptions(continuous_batching=True))
    assert engine.generation_mode() == "continuous"
    for stop in ((), ("7",)):
        want = HFEngine(llama, tok).generate(prompts, max_new_tokens=6, stop_strings=stop, batch_size=4)
        assert engine.generate(prompts, max_new_tokens=6, stop_strings=stop, batch_size=4) == want


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from evomerge.toyworld import build_toyworld

    return build_toyworld(dir=tmp_path_factory.mktemp("toyworld") / "world", preset="test", log=None)


def test_toy_world_scores_equal_its_own_scorer(world):
    """On the toy world's test preset: the engine's forced exact match (``logits_to_keep`` on and
    off) equals the world's own teacher-forced scorer example by example, and greedy generation
    gives the same texts through ``model.generate`` and the loop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evomerge.toyworld.train import forced_exact_match

    tok = AutoTokenizer.from_pretrained(str(world.tokenizer))
    fit = Fitness.from_dict(world.fitness_config([t["name"] for t in world.tasks]))
    generation = [{**t, "scorer": {"type": "exact_match", "max_new_tokens": 8, "strip": False}} for t in world.tasks]
    gen_fit = {
        mode: Fitness.from_dict({"tasks": generation, "engine": {"generation": mode}}) for mode in ("generate", "loop")
    }
    right = total = 0
    for path in [world.base, *world.experts.values()]:
        model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
        for split in ("calibration", "validation"):
            on = fit.evaluate(HFEngine(model, tok), split)
            off = fit.evaluate(HFEngine(model, tok, HFOptions(logits_to_keep=False)), split)
            for name, task in fit.tasks.items():
                examples = task.examples(split)
                own = forced_exact_match(model, [(e.prompt, e.answer) for e in examples]).tolist()
                assert on.tasks[name].scores == off.tasks[name].scores == own, (path.name, split, name)
                right, total = right + sum(own), total + len(own)
            a, b = (gen_fit[mode].evaluate(model, tok, split) for mode in ("generate", "loop"))
            for name in fit.tasks:
                assert a.tasks[name].outputs == b.tasks[name].outputs and a.tasks[name].scores == b.tasks[name].scores
                # greedy exact match on EOS-terminated answers equals the forced one (no strip, no extraction)
                assert a.tasks[name].scores == on.tasks[name].scores
    assert 50 < right < total - 50  # the comparison covers right and wrong answers
