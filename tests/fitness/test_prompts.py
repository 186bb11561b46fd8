"""Prompts as instruct models read them: chat templates (rendered ids checked against hand-written
ones), system prompts, few-shot examples from a disjoint seeded split, answer-extraction presets,
for every scorer."""

import numpy as np
import pytest
import torch

from evomerge.errors import ConfigError
from evomerge.fitness import Fitness, generators, parse_fitness_config
from evomerge.fitness.engines import HFEngine
from evomerge.fitness.prompts import PromptFormat
from evomerge.fitness.scorers.extract import PRESETS, make_extractor
from evomerge.testing import CHAT_VOCAB, LLAMA3_STYLE_TEMPLATE, chat_tokenizer, tiny_config

BOS, SH, EH, EOT = (
    CHAT_VOCAB.index(t) for t in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
)


def c(text: str) -> list[int]:
    """Hand-written ids of plain text: one id per character, from the vocabulary table."""
    return [CHAT_VOCAB.index(ch) for ch in text]


def turn(role: str, content: str) -> list[int]:
    return [SH, *c(role), EH, *c("\n\n" + content), EOT]


OPENING = [SH, *c("assistant"), EH, *c("\n\n")]


@pytest.fixture(scope="module")
def ctok():
    return chat_tokenizer()


def test_chat_rendering_equals_hand_written_ids(ctok):
    fmt = PromptFormat(chat_template=True, system="Be brief.", shots=[("1+1=", "2"), ("3+4=", "7")])
    want = [BOS, *turn("system", "Be brief."), *turn("user", "1+1="), *turn("assistant", "2")]
    want += [*turn("user", "3+4="), *turn("assistant", "7"), *turn("user", "2+2="), *OPENING]
    assert fmt.encode(ctok, "2+2=") == want
    # exactly one BOS, although this tokenizer adds one to whatever it encodes with special tokens
    assert ctok(fmt.render(ctok, "2+2="))["input_ids"][:2] == [BOS, BOS]
    assert (
        PromptFormat(chat_template=True, prepend_bos=True, system="Be brief.", shots=fmt.shots).encode(ctok, "2+2=")
        == want
    )
    assert PromptFormat(chat_template=True, prepend_bos=False).encode(ctok, "hi") == [*turn("user", "hi"), *OPENING]
    # no system, no shots: one user turn
    assert PromptFormat(chat_template=True).encode(ctok, "hi") == [BOS, *turn("user", "hi"), *OPENING]
    # a template given in the config, for a tokenizer that has none
    bare = chat_tokenizer(chat_template=None)
    assert (
        PromptFormat(chat_template=LLAMA3_STYLE_TEMPLATE, system="Be brief.", shots=fmt.shots).encode(bare, "2+2=")
        == want
    )


def test_plain_prompts_with_system_and_shots(ctok):
    fmt = PromptFormat(system="Add.", shots=[("1+1=", "2"), ("3+4=", "7")], separator="\n")
    assert fmt.encode(ctok, "2+2=") == [BOS, *c("Add.\n1+1=2\n3+4=7\n2+2=")]  # the tokenizer's BOS convention
    assert PromptFormat(prepend_bos=False, shots=[("a", "b")]).encode(ctok, "c") == c("ab\n\nc")
    assert PromptFormat().encode(ctok, "2+2=") == ctok("2+2=")["input_ids"]  # nothing set: as before


def test_missing_or_refusing_chat_template_is_one_line(ctok):
    rows = [{"id": str(i), "prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(12)]
    generators.register("test.chat_rows", lambda: rows)
    try:
        task = {"name": "t", "source": {"type": "generator", "name": "test.chat_rows"}, "splits": {"calibration": 6}}
        fit = Fitness.from_dict({"tasks": [{**task, "chat_template": True, "scorer": {"type": "nll"}}]})
        bare = chat_tokenizer(chat_template=None)
        bare.name_or_path = "models/base"

        class Untouchable(torch.nn.Module):
            def forward(self, *args, **kwargs):
                raise AssertionError("the model must not run")

        msg = (
            "task 't': chat_template: true, but the tokenizer of models/base has no chat template "
            '(give the template itself as chat_template: "...", or set chat_template: false)'
        )
        for call in (lambda: fit.check_tokenizer(bare), lambda: fit.evaluate(Untouchable(), bare, "calibration")):
            with pytest.raises(ConfigError) as info:
                call()
            assert str(info.value) == msg
        fit.check_tokenizer(ctok)  # fine
        refusing = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}"
        strict = Fitness.from_dict(
            {"tasks": [{**task, "chat_template": refusing, "system": "S", "scorer": {"type": "nll"}}]}
        )
        with pytest.raises(
            ConfigError, match=r"^task 't': the chat template cannot render this prompt \(System role not supported\)$"
        ):
            strict.check_tokenizer(ctok)
    finally:
        generators.unregister("test.chat_rows")


class Recording:
    """An engine that records the requests a scorer sends, answering through a real HF engine."""

    def __init__(self, inner):
        self.inner, self.model, self.tokenizer, self.seen = inner, inner.model, inner.tokenizer, []

    def rebind(self, model, tokenizer=None):
        self.inner.rebind(model, tokenizer)

    def generate(self, prompts, **kw):
        self.seen.append(("generate", [list(p) for p in prompts]))
        return self.inner.generate(prompts, **kw)

    def loglikelihood(self, requests, **kw):
        self.seen.append(("loglikelihood", [(list(a), list(b)) for a, b in requests]))
        return self.inner.loglikelihood(requests, **kw)

    def forced_exact_match(self, requests, **kw):
        self.seen.append(("forced_exact_match", [(list(a), list(b)) for a, b in requests]))
        return self.inner.forced_exact_match(requests, **kw)


@pytest.fixture(scope="module")
def chat_llama():
    from transformers import AutoModelForCausalLM

    cfg = tiny_config("llama", vocab_size=len(CHAT_VOCAB))
    cfg.bos_token_id, cfg.eos_token_id, cfg.initializer_range = BOS, EOT, 0.3
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


def test_every_scorer_sends_the_chat_rendered_prompt(ctok, chat_llama):
    rows = [{"id": "a", "q": "2+2=", "a": "4", "opts": ["4", "5"], "gold": 0}] + [
        {"id": f"s{i}", "q": f"{i}+{i}=", "a": str(2 * i), "opts": [str(2 * i), "9"], "gold": 0} for i in range(1, 6)
    ]
    generators.register("test.chat_scorers", lambda: rows)
    try:
        base = {
            "source": {"type": "generator", "name": "test.chat_scorers"},
            "fields": {"prompt": "q", "answer": "a", "choices": "opts", "label": "gold"},
            "chat_template": True,
            "system": "Add.",
            "fewshot": 1,
            "splits": {"calibration": 1, "validation": 0, "fewshot": 5, "seed": 0},
        }
        scorers = {
            "generate": {"type": "exact_match", "max_new_tokens": 3},
            "forced": {"type": "exact_match_forced"},
            "choice": {"type": "choice_loglik"},
            "nll": {"type": "nll"},
        }
        fit = Fitness.from_dict({"tasks": [{**base, "name": n, "scorer": s} for n, s in scorers.items()]})
        (shot,), (ex,) = fit.tasks["nll"].fewshot_examples(), fit.tasks["nll"].examples("calibration")
        prompt = [BOS, *turn("system", "Add."), *turn("user", shot.prompt), *turn("assistant", shot.answer)]
        prompt += [*turn("user", ex.prompt), *OPENING]
        engine = Recording(HFEngine(chat_llama, ctok))
        res = fit.evaluate(engine, "calibration")
        assert engine.seen == [
            ("generate", [prompt]),
            ("forced_exact_match", [(prompt, c(ex.answer) + [EOT])]),
            ("loglikelihood", [(prompt, c(choice)) for choice in ex.choices]),
            ("loglikelihood", [(prompt, c(ex.answer))]),
        ]
        with torch.no_grad():
            lp = torch.log_softmax(chat_llama(input_ids=torch.tensor([prompt + c(ex.answer)])).logits[0], -1)
        want = -sum(float(lp[len(prompt) - 1 + k, t]) for k, t in enumerate(c(ex.answer))) / len(ex.answer)
        assert res.tasks["nll"].scores == [pytest.approx(want, abs=1e-5)]
    finally:
        generators.unregister("test.chat_scorers")


def fewshot_task(**over):
    task = {
        "name": "t",
        "source": {"type": "generator", "name": "test.fewshot_rows"},
        "scorer": {"type": "exact_match_forced"},
        "fewshot": 3,
        "splits": {"calibration": 10, "validation": 20, "fewshot": 5, "seed": 4},
    }
    return {**task, **over}


@pytest.fixture
def fewshot_rows():
    rows = [{"id": f"r{i}", "prompt": f"q{i}", "answer": f"a{i}"} for i in range(40)]
    generators.register("test.fewshot_rows", lambda: rows)
    yield rows
    generators.unregister("test.fewshot_rows")


def test_fewshot_split_is_disjoint_and_seeded(fewshot_rows):
    task = Fitness.from_dict({"tasks": [fewshot_task()]}).tasks["t"]
    perm = np.random.default_rng(4).permutation(40)
    pool = [f"r{i}" for i in perm[-5:]]  # the few-shot split: the permutation's last 5, in its order
    assert [e.id for e in task.fewshot_examples()] == pool[:3]
    assert task.scorer.prompts.shots == [(f"q{i[1:]}", f"a{i[1:]}") for i in pool[:3]]
    cal, val = ({e.id for e in task.examples(s)} for s in ("calibration", "validation"))
    assert not set(pool) & (cal | val) and len(cal) == 10 and len(val) == 20
    # adding few-shot examples leaves calibration as it was; validation "all the rest" shrinks by the pool
    plain = Fitness.from_dict({"tasks": [fewshot_task(fewshot=0, splits={"calibration": 10, "seed": 4})]}).tasks["t"]
    assert [e.id for e in plain.examples("calibration")] == [e.id for e in task.examples("calibration")]
    rest = Fitness.from_dict({"tasks": [fewshot_task(splits={"calibration": 10, "seed": 4})]}).tasks["t"]
    assert rest.split_size("validation") == 40 - 10 - 3 and len(rest.fewshot_examples()) == 3
    other = Fitness.from_dict({"tasks": [fewshot_task(splits={"calibration": 10, "fewshot": 5, "seed": 5})]}).tasks["t"]
    assert [e.id for e in other.fewshot_examples()] == [f"r{i}" for i in np.random.default_rng(5).permutation(40)[-5:]][
        :3
    ]


def test_fewshot_errors_are_one_line(fewshot_rows):
    def error(task):
        with pytest.raises(ConfigError) as info:
            Fitness.from_dict({"tasks": [task]})
        return str(info.value)

    assert error(fewshot_task(splits={"calibration": 10, "validation": 28, "fewshot": 5})) == (
        "task 't': splits.calibration + validation + fewshot = 10 + 28 + 5 but generator 'test.fewshot_rows' has 40 examples"
    )
    assert error(fewshot_task(splits={"calibration": 10, "fewshot": 2})) == (
        "task 't': splits.fewshot = 2: fewshot: 3 needs a few-shot split of at least 3 examples"
    )
    assert error(fewshot_task(fewshot=-1)) == "task 't': fewshot = -1: Input should be greater than or equal to 0"
    assert (
        error(fewshot_task(chat_tempalte=True))
        == "task 't': chat_tempalte: unknown key (did you mean 'chat_template'?)"
    )
    assert error(fewshot_task(chat_template="{% if %}")).startswith(
        "task 't': chat_template = '{% if %}': invalid Jinja template ("
    )
    lm = {"name": "h", "source": {"type": "lmeval", "task": "arc_easy"}, "system": "S"}
    assert error(lm) == "task 'h': lm-eval tasks take their prompts from the harness: remove system"


def test_nll_with_a_chat_template_needs_answers():
    rows = [{"id": "0", "prompt": "hello"}, {"id": "1", "prompt": "world", "answer": "x"}]
    generators.register("test.nll_rows", lambda: rows)
    try:
        task = {"name": "t", "source": {"type": "generator", "name": "test.nll_rows"}, "scorer": {"type": "nll"}}
        Fitness.from_dict({"tasks": [{**task, "splits": {"calibration": 1}}]})  # plain: scores the whole text
        with pytest.raises(
            ConfigError,
            match=r"^task 't': column 'answer' \(field answer\) missing in generator 'test.nll_rows' row 0;",
        ):
            Fitness.from_dict({"tasks": [{**task, "chat_template": True, "splits": {"calibration": 1}}]})
    finally:
        generators.unregister("test.nll_rows")


@pytest.mark.parametrize(
    "preset, text, answer",
    [
        ("last_number", "5 apples and 7 pears make 12.", "12"),
        ("last_number", "It costs $1,234.50 in total", "1234.5"),
        ("last_number", "-3 degrees, then -7", "-7"),
        ("last_number", "no number here", None),
        ("gsm8k", "She sold 48/2 = 24 clips in May.\n#### 72", "72"),
        ("gsm8k", "#### 1,000\nthen #### $-5.0", "-5"),
        ("gsm8k", "The answer is 72", None),
        ("gsm8k", "#### seventy", None),
        ("boxed", r"So $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        ("boxed", r"first \boxed{1}, finally \boxed{ 2.50 }", "2.5"),
        ("boxed", r"\boxed{3", None),
        ("choice_letter", "The answer is (B).", "B"),
        ("choice_letter", "answer: C, since", "C"),
        ("choice_letter", "(D) is right", "D"),
        ("choice_letter", "B.", "B"),
        ("choice_letter", "A cat sat on the mat", None),
        ("choice_letter", "the answer is d", None),
    ],
)
def test_extraction_presets(preset, text, answer):
    assert make_extractor(preset).extract(text) == answer


def test_presets_read_references_alike():
    assert PRESETS["gsm8k"].reference("Natalia sold 48 clips.\n#### 72") == "72"
    assert PRESETS["gsm8k"].reference(" 1,000 ") == "1000"
    assert PRESETS["last_number"].reference("It is 12.0 metres") == "12"
    assert PRESETS["boxed"].reference(r"\boxed{\pi}") == r"\pi" and PRESETS["boxed"].reference("7") == "7"
    assert PRESETS["choice_letter"].reference(" (b) ") == "B"
    assert make_extractor(r"(\d+)").reference(" 1,0 ") == " 1,0 "  # a regex leaves the reference alone


def test_presets_in_the_scorer(ctok):
    from conftest import bigram_llama, successor_table

    from evomerge.fitness.scorers import build
    from evomerge.testing import char_tokenizer

    tok, model = char_tokenizer(), bigram_llama(successor_table())  # continues "…3" with "456789"
    ex = [
        {"prompt": "3", "answer": "the answer is\n#### 456789"},  # the reference holds a GSM8K solution
        {"prompt": "3", "answer": "456,789"},
        {"prompt": "3", "answer": "45"},
    ]
    from evomerge.fitness import Example

    examples = [Example(id=str(i), **e) for i, e in enumerate(ex)]
    scores = build({"type": "exact_match", "max_new_tokens": 30, "extract": "last_number"}).score(
        HFEngine(model, tok), examples
    )
    assert scores.scores == [1.0, 1.0, 0.0]
    with pytest.raises(
        ConfigError, match=r"^task 't': scorer.extract_group = 2: applies to a regex, not the preset 'gsm8k'$"
    ):
        parse_fitness_config(
            {
                "tasks": [
                    {
                        "name": "t",
                        "source": {"type": "generator", "name": "g"},
                        "scorer": {"type": "exact_match", "extract": "gsm8k", "extract_group": 2},
                    }
                ]
            }
        )
