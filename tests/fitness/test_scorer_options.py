"""The ``scorer`` section is a discriminated union on ``type``: every option of every scorer is typed,
and every mistake is one did-you-mean line naming the task and key."""

import pytest

from evomerge.errors import ConfigError
from evomerge.fitness import parse_fitness_config, parse_scorer
from evomerge.fitness.scorers import SCORERS, build
from evomerge.fitness.scorers.choice import ChoiceLoglik
from evomerge.fitness.scorers.custom import CallableScorer
from evomerge.fitness.scorers.forced import ForcedExactMatch
from evomerge.fitness.scorers.generation import GenerationExactMatch
from evomerge.fitness.scorers.nll import MeanNLL


def error_for(scorer) -> str:
    task = {"name": "t", "source": {"type": "generator", "name": "g"}, "scorer": scorer}
    with pytest.raises(ConfigError) as info:
        parse_fitness_config({"tasks": [task]})
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    "scorer, message",
    [
        (
            {"type": "bleu"},
            "scorer.type: unknown scorer 'bleu' (known: exact_match, exact_match_forced, choice_loglik, nll, callable)",
        ),
        ({"type": "exact_matc"}, "scorer.type: unknown scorer 'exact_matc' (did you mean 'exact_match'?)"),
        ({}, "scorer.type: missing key (one of: exact_match, exact_match_forced, choice_loglik, nll, callable)"),
        (
            {"type": "exact_match", "max_new_token": 4},
            "scorer.max_new_token: unknown key (did you mean 'max_new_tokens'?)",
        ),
        (
            {"type": "exact_match", "max_new_tokens": 0},
            "scorer.max_new_tokens = 0: Input should be greater than or equal to 1",
        ),
        ({"type": "exact_match", "stop": "x"}, "scorer.stop = 'x': Input should be a valid list"),
        (
            {"type": "exact_match", "extract": "("},
            "scorer.extract = '(': invalid regex (missing ), unterminated subpattern at position 0)",
        ),
        (
            {"type": "exact_match", "extract": r"(\d)", "extract_group": 2},
            r"scorer.extract_group: regex '(\\d)' has 1 groups, extract_group is 2",
        ),
        (
            {"type": "exact_match", "extract": r"(\d)", "extract_group": "num"},
            r"scorer.extract_group: regex '(\\d)' has no group named 'num'",
        ),
        (
            {"type": "exact_match", "lowercase": "yes please"},
            "scorer.lowercase = 'yes please': Input should be a valid boolean, unable to interpret input",
        ),
        ({"type": "exact_match", "strp": False}, "scorer.strp: unknown key (did you mean 'strip'?)"),
        (
            {"type": "exact_match_forced", "append_eoss": False},
            "scorer.append_eoss: unknown key (did you mean 'append_eos'?)",
        ),
        (
            {"type": "exact_match_forced", "max_new_tokens": 4},
            "scorer.max_new_tokens: unknown key (known keys: type, append_eos)",
        ),
        ({"type": "choice_loglik", "normalise": "tokens"}, "scorer.normalise: unknown key (did you mean 'normalize'?)"),
        (
            {"type": "choice_loglik", "normalize": "bytes"},
            "scorer.normalize = 'bytes': Input should be 'none', 'tokens' or 'chars'",
        ),
        ({"type": "nll", "stop": ["x"]}, "scorer.stop: unknown key (known keys: type)"),
        ({"type": "callable"}, "scorer.fn: missing key"),
        ({"type": "callable", "fn": "m:f", "bounde": True}, "scorer.bounde: unknown key (did you mean 'bounded'?)"),
        ({"type": "callable", "fn": "m:f", "params": [1]}, "scorer.params = [1]: Input should be a valid dictionary"),
        ("nll", "scorer = 'nll': Input should be a valid dictionary or object to extract fields from"),
    ],
)
def test_every_option_error_is_one_line(scorer, message):
    assert error_for(scorer) == f"task 't': {message}"


def test_registry_and_options_round_trip():
    assert {n: SCORERS.get(n) for n in SCORERS} == {
        "exact_match": GenerationExactMatch,
        "exact_match_forced": ForcedExactMatch,
        "choice_loglik": ChoiceLoglik,
        "nll": MeanNLL,
        "callable": CallableScorer,
    }
    for name in SCORERS:
        assert SCORERS.get(name).Options.model_fields["type"].default == name
    cfg = parse_fitness_config({"tasks": [{"name": "t", "source": {"type": "generator", "name": "g"}}]})
    assert cfg.tasks[0].scorer == GenerationExactMatch.Options()  # the default scorer
    dumped = {"type": "choice_loglik", "normalize": "chars"}
    opts = parse_scorer(dumped)
    assert isinstance(opts, ChoiceLoglik.Options) and opts.model_dump() == dumped
    assert isinstance(build(dumped), ChoiceLoglik)
    with pytest.raises(ConfigError, match=r"^scorer.normalize = 'x': Input should be"):
        build({"type": "choice_loglik", "normalize": "x"})
    with pytest.raises(ConfigError, match=r"^unknown scorer 'nope' \(known: "):
        SCORERS.get("nope")
