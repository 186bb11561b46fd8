"""From an example's prompt text to the token ids a scorer sends: chat templates, system prompts,
few-shot examples, BOS.

A task's ``template`` renders each example's prompt (the user's turn); :class:`PromptFormat`
wraps it the way the model was trained to read it:

* ``chat_template: true`` — the tokenizer's chat template (``tokenizer.apply_chat_template`` with
  ``add_generation_prompt=True``) over ``[system?] + [user: shot, assistant: its answer]·k + [user:
  prompt]``; or a Jinja template string of its own (the same, with that template), for a merge whose
  tokenizer carries none. The rendered text is encoded **without** special tokens: templates
  write BOS themselves, and the tokenizer adding its own would make two.
* without a chat template: ``system``, then each shot's prompt immediately followed by its answer,
  then the prompt, joined by ``fewshot_separator`` (default a blank line), encoded by the
  tokenizer's own convention — so a task without ``system`` and ``fewshot`` encodes exactly as
  before.
* ``prepend_bos``: ``null`` keeps that convention (the template's BOS, or the tokenizer's),
  ``true`` makes sure the ids start with exactly one BOS, ``false`` drops a leading BOS (plain
  text: no special tokens at all).

Scorers then append what they score (the answer, a choice, EOS) after these ids, so chat
formatting works alike for generation, forced exact match, choice log-likelihood and NLL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from evomerge.errors import ConfigError


@dataclass
class PromptFormat:
    task: str = "?"
    chat_template: bool | str = False
    system: str | None = None
    shots: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (prompt, answer) of each few-shot example
    separator: str = "\n\n"
    prepend_bos: bool | None = None

    @property
    def chat(self) -> bool:
        return self.chat_template is not False

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """The conversation a chat template renders for ``prompt``."""
        out = [{"role": "system", "content": self.system}] if self.system is not None else []
        for shot_prompt, shot_answer in self.shots:
            out += [{"role": "user", "content": shot_prompt}, {"role": "assistant", "content": shot_answer}]
        return out + [{"role": "user", "content": prompt}]

    def text(self, prompt: str) -> str:
        """The plain-text prompt (no chat template): system, shots, prompt."""
        parts = [self.system] if self.system is not None else []
        parts += [shot_prompt + shot_answer for shot_prompt, shot_answer in self.shots]
        return self.separator.join([*parts, prompt])

    def check(self, tokenizer) -> None:
        """One line now, before any model work, if ``tokenizer`` cannot render this task's prompts."""
        if not self.chat:
            return
        if self.chat_template is True and not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            raise ConfigError(
                f"task {self.task!r}: chat_template: true, but the tokenizer of {name} has no chat template "
                '(give the template itself as chat_template: "...", or set chat_template: false)'
            )
        self.render(tokenizer, "")

    def render(self, tokenizer, prompt: str) -> str:
        """The chat-rendered prompt text (generation prompt included)."""
        import jinja2

        kw = {} if self.chat_template is True else {"chat_template": self.chat_template}
        try:
            return tokenizer.apply_chat_template(
                self.messages(prompt), tokenize=False, add_generation_prompt=True, **kw
            )
        except jinja2.TemplateError as exc:  # e.g. "System role not supported", a syntax error
            raise ConfigError(f"task {self.task!r}: the chat template cannot render this prompt ({exc})") from None

    def encode(self, tokenizer, prompt: str) -> list[int]:
        """The ids of ``prompt`` as the model reads it (see the module docstring)."""
        bos = tokenizer.bos_token_id
        if self.chat:
            ids = list(tokenizer(self.render(tokenizer, prompt), add_special_tokens=False)["input_ids"])
            if self.prepend_bos is False and ids and ids[0] == bos:
                ids = ids[1:]
        else:
            ids = list(tokenizer(self.text(prompt), add_special_tokens=self.prepend_bos is None)["input_ids"])
        if self.prepend_bos:
            if bos is None:
                raise ConfigError(f"task {self.task!r}: prepend_bos: true, but the tokenizer has no bos_token")
            if not ids or ids[0] != bos:
                ids = [bos] + ids
        return ids


def encode_continuation(tokenizer, text: str) -> list[int]:
    """Ids of a continuation (an answer, a choice) as it follows a prompt: no special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
