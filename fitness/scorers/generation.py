"""Exact match on greedy generations (:meth:`~evomerge.fitness.engines.base.InferenceEngine.generate`).

A generation ends at an EOS id, when its text contains a stop string (``stop``), or after
``max_new_tokens``; the text before the EOS and the first stop string is what ``extract`` reads
(:mod:`evomerge.fitness.scorers.extract`) and what is compared with the answer (a preset reads the
reference the same way), after optional whitespace stripping and lower-casing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from evomerge.fitness.scorers.base import ScoreBatch, Scorer, ScorerOptions
from evomerge.fitness.scorers.extract import PRESETS, check_group, check_regex, is_regex, make_extractor


class ExactMatchOptions(ScorerOptions):
    """``max_new_tokens``; ``stop`` strings end a generation; ``extract``: ``None`` (the whole text),
    a preset (``last_number``, ``gsm8k``, ``boxed``, ``choice_letter``), a regex whose group
    ``extract_group`` is the answer, or ``"pkg.mod:fn"`` (text -> answer); ``strip`` surrounding
    whitespace before comparing (default true); ``lowercase``."""

    type: Literal["exact_match"] = "exact_match"
    max_new_tokens: int = Field(16, ge=1)
    stop: list[str] = Field(default_factory=list)
    extract: str | None = None
    extract_group: int | str = 1
    strip: bool = True
    lowercase: bool = False

    @field_validator("extract")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if is_regex(value):
            check_regex(value)
        return value

    @field_validator("extract_group")
    @classmethod
    def _group_exists(cls, value: int | str, info: ValidationInfo) -> int | str:
        spec = info.data.get("extract")
        if spec in PRESETS and value != 1:
            raise ValueError(f"applies to a regex, not the preset {spec!r}")
        if is_regex(spec):
            check_group(check_regex(spec), value)
        return value


class GenerationExactMatch(Scorer):
    """1.0 when the extracted answer equals the reference (after optional strip / lowercase)."""

    Options = ExactMatchOptions
    needs = ("answer",)

    def __init__(self, cfg, *, prompts=None):
        super().__init__(cfg, prompts=prompts)
        self.extractor = make_extractor(cfg.extract, cfg.extract_group, search=cfg.search_dirs())

    def normalise(self, text: str | None) -> str | None:
        if text is None:
            return None
        if self.cfg.strip:
            text = text.strip()
        if self.cfg.lowercase:
            text = text.lower()
        return text

    def score(self, engine, examples, *, batch_size=16):
        prompts = [self.encode_prompt(engine.tokenizer, ex) for ex in examples]
        out = engine.generate(
            prompts, max_new_tokens=self.cfg.max_new_tokens, stop_strings=self.cfg.stop, batch_size=batch_size
        )
        scores = []
        for ex, text in zip(examples, out.texts):
            got = self.normalise(self.extractor.extract(text))
            scores.append(float(got is not None and got == self.normalise(self.extractor.reference(ex.answer))))
        return ScoreBatch(scores=scores, tokens=out.tokens, outputs=out.texts)
