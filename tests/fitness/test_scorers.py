import pytest
import torch
from conftest import greedy_successor

from evomerge.fitness import Fitness, generators
from evomerge.fitness.engines import HFEngine, HFOptions
from evomerge.fitness.scorers import Example, build
from evomerge.fitness.scorers.choice import continuation_logliks


def greedy_generate(model, tok, prompts, *, max_new_tokens, batch_size=16, **options):
    g = HFEngine(model, tok, HFOptions(**options)).generate(
        prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return g.texts, g.ids, g.tokens


PROMPTS = ["1+2=", "45+7", "w", "99+98", "x", "12+34=", "7", "hellu", "5+5=", "v", "6", "abc+y"]


def enc(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_exact_match_on_known_outputs(successor_model, tok):
    # the bigram model continues "…5" with "6789" then EOS, "…w" with "xyz" then EOS, "…=" with "789"
    right = [Example(id=f"r{i}", prompt=p, answer=greedy_successor(p)) for i, p in enumerate(PROMPTS)]
    wrong = [Example(id=f"w{i}", prompt=p, answer=greedy_successor(p)[:-1] + "!") for i, p in enumerate(PROMPTS[:6])]
    assert greedy_successor("1+2=") == "789" and greedy_successor("x") == "yz"
    scorer = build({"type": "exact_match", "max_new_tokens": 30})
    out = scorer.score(HFEngine(successor_model, tok), right + wrong, batch_size=5)
    assert out.scores == [1.0] * len(right) + [0.0] * len(wrong)
    assert out.outputs[:2] == [greedy_successor(PROMPTS[0]), greedy_successor(PROMPTS[1])]
    # too few new tokens: the answer is cut short, so no match
    short = build({"type": "exact_match", "max_new_tokens": 2}).score(HFEngine(successor_model, tok), right[:3])
    assert short.scores == [0.0, 1.0, 0.0] and short.outputs == ["78", "89", "xy"]


def test_stop_strings_and_extraction(successor_model, tok):
    ex = [Example(id="a", prompt="3", answer="45"), Example(id="b", prompt="q", answer="rs")]
    stopped = build({"type": "exact_match", "max_new_tokens": 30, "stop": ["67", "t"]}).score(
        HFEngine(successor_model, tok), ex
    )
    assert stopped.outputs == ["45", "rs"] and stopped.scores == [1.0, 1.0]
    regex = build({"type": "exact_match", "max_new_tokens": 30, "extract": r"(\d)9$"})
    assert regex.score(HFEngine(successor_model, tok), [Example(id="a", prompt="5", answer="8")]).scores == [1.0]
    fn = build({"type": "exact_match", "max_new_tokens": 30, "extract": "fitness_helpers:last_digit"})
    assert fn.score(
        HFEngine(successor_model, tok),
        [Example(id="a", prompt="6", answer="9"), Example(id="b", prompt="x", answer="z")],
    ).scores == [1.0, 0.0]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_generation_equals_unbatched(arch, request, tok):
    model = request.getfixturevalue(f"random_{arch}")
    prompts = enc(tok, PROMPTS)  # lengths 1..6: every batch mixes padding amounts
    one, ids_one, _ = greedy_generate(model, tok, prompts, max_new_tokens=8, batch_size=1)
    assert len(set(one)) > 6, "the random model should produce varied outputs"
    for bs in (3, 12):
        many, ids_many, _ = greedy_generate(model, tok, prompts, max_new_tokens=8, batch_size=bs)
        assert ids_many == ids_one and many == one
    # and unbatched equals transformers' own greedy generate
    for p, ids in zip(prompts[:4], ids_one[:4]):
        ref = model.generate(
            torch.tensor([p]),
            attention_mask=torch.ones(1, len(p), dtype=torch.long),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=2,
        )
        assert ref[0, len(p) :].tolist()[: len(ids)] == ids


def test_generation_without_cache_matches(random_llama, tok):
    class NoCache(torch.nn.Module):  # a custom module that keeps no KV cache
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
            return (
                self.inner(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
                ).logits,
            )

    prompts = enc(tok, PROMPTS[:6])
    a, _, _ = greedy_generate(random_llama, tok, prompts, max_new_tokens=5, batch_size=6)
    b, _, _ = greedy_generate(NoCache(random_llama), tok, prompts, max_new_tokens=5, batch_size=6)
    assert a == b


def test_choice_loglik_matches_hand_computation(random_llama, tok):
    pairs = [("12+3=", "15"), ("12+3=", "51"), ("ab", "c"), ("ab", "cde"), ("7", "77")]
    out = continuation_logliks(
        HFEngine(random_llama, tok), pairs, batch_size=4, encode=lambda s: tok(s, add_special_tokens=False)["input_ids"]
    )
    lls, lens = [i.total for i in out.items], [i.length for i in out.items]
    for (ctx, cont), ll in zip(pairs, lls):
        c = tok(ctx, add_special_tokens=False)["input_ids"]
        t = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = random_llama(input_ids=torch.tensor([c + t])).logits[0].double()
        hand = 0.0
        for k, target in enumerate(t):
            row = logits[len(c) - 1 + k]
            hand += float(row[target] - torch.log(torch.exp(row - row.max()).sum()) - row.max())
        assert ll == pytest.approx(hand, abs=1e-4)
    assert lens == [2, 2, 1, 3, 2]

    examples = [
        Example(id="e0", prompt="12+3=", choices=["15", "51"], label=0),
        Example(id="e1", prompt="ab", choices=["c", "cde"], label=1),
    ]
    for norm, divide in (
        ("none", lambda ll, n, s: ll),
        ("tokens", lambda ll, n, s: ll / n),
        ("chars", lambda ll, n, s: ll / len(s)),
    ):
        got = build({"type": "choice_loglik", "normalize": norm}).score(
            HFEngine(random_llama, tok), examples, batch_size=3
        )
        want = []
        for ex, (i, j) in zip(examples, [(0, 1), (2, 3)]):
            vals = [divide(lls[k], lens[k], pairs[k][1]) for k in (i, j)]
            want.append(float(max(range(2), key=lambda q: vals[q]) == ex.label))
        assert got.scores == want


def test_nll_matches_hand_computation(random_gpt2, tok):
    ex = [Example(id="a", prompt="12+3=", answer="15"), Example(id="b", prompt="hello world")]
    out = build({"type": "nll"}).score(HFEngine(random_gpt2, tok), ex, batch_size=2)
    ids = tok("12+3=15", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(random_gpt2(input_ids=torch.tensor([ids])).logits[0], -1)
    hand_a = -(lp[4, ids[5]] + lp[5, ids[6]]) / 2
    ids_b = tok("hello world", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp_b = torch.log_softmax(random_gpt2(input_ids=torch.tensor([ids_b])).logits[0], -1)
    hand_b = -sum(lp_b[k - 1, ids_b[k]] for k in range(1, len(ids_b))) / (len(ids_b) - 1)
    assert out.scores == pytest.approx([float(hand_a), float(hand_b)], abs=1e-5)
    assert out.weights == [2.0, float(len(ids_b) - 1)]


def test_forced_exact_match_equals_greedy(successor_model, random_llama, tok):
    # with EOS: the bigram model stops by itself; references right, too short, too long, wrong
    refs = []
    for i, p in enumerate(PROMPTS):
        g = greedy_successor(p)
        refs.append([g, g[:-1], g + "0", "x" + g[1:]][i % 4] or "0")
    ex = [Example(id=str(i), prompt=p, answer=a) for i, (p, a) in enumerate(zip(PROMPTS, refs))]
    greedy = build({"type": "exact_match", "max_new_tokens": 40, "strip": False}).score(
        HFEngine(successor_model, tok), ex
    )
    forced = build({"type": "exact_match_forced"}).score(HFEngine(successor_model, tok), ex, batch_size=5)
    assert forced.scores == greedy.scores and 0 < sum(greedy.scores) < len(ex)
    # without EOS on a random model: references are its own first 3 tokens for half the prompts
    texts, _, _ = greedy_generate(random_llama, tok, enc(tok, PROMPTS), max_new_tokens=3)
    ex = [
        Example(id=str(i), prompt=p, answer=t if i % 2 else t[::-1] + "q")
        for i, (p, t) in enumerate(zip(PROMPTS, texts))
    ]
    ex = [e for e in ex if len(e.answer) == 3 or e.answer.endswith("q")]
    greedy = build({"type": "exact_match", "max_new_tokens": 3, "strip": False}).score(HFEngine(random_llama, tok), ex)
    forced = build({"type": "exact_match_forced", "append_eos": False}).score(
        HFEngine(random_llama, tok), ex, batch_size=4
    )
    assert forced.scores == greedy.scores and 0 < sum(greedy.scores) < len(ex)


def test_per_example_scores_line_up_with_ids(successor_model, tok):
    rows = []
    for i, p in enumerate(PROMPTS * 2):
        ok = (i * 7) % 3 == 0
        rows.append({"id": f"q{i}", "prompt": p, "answer": greedy_successor(p) if ok else "nope"})
    generators.register("test.lineup", lambda: rows)
    try:
        fit = Fitness.from_dict(
            {
                "tasks": [
                    {
                        "name": "t",
                        "source": {"type": "generator", "name": "test.lineup"},
                        "scorer": {"type": "exact_match", "max_new_tokens": 30},
                        "splits": {"calibration": 20, "seed": 3},
                    }
                ]
            }
        )
        res = fit.evaluate(successor_model, tok, "calibration", batch_size=4)
    finally:
        generators.unregister("test.lineup")
    ts = res.tasks["t"]
    assert ts.example_ids == [e.id for e in fit.tasks["t"].examples("calibration")]
    want = {r["id"]: float(r["answer"] != "nope") for r in rows}
    assert ts.by_id() == {i: want[i] for i in ts.example_ids}
    assert res.values == [pytest.approx(sum(ts.scores) / 20)] and res.tokens > 0 and not res.stopped_early
