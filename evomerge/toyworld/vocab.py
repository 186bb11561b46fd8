"""The toy world's vocabulary and its word-level tokenizer.

Every token is one whitespace-separated word: a digit, a word of one of the two languages, a
translation marker or a special token. Two languages share the digits and differ in the words
around them (the miniature of "Japanese vs English around the same numbers"):

- L1 ("English"): ``C`` copy, ``R`` reverse, ``S`` successor, ``+`` plus, ``=`` ends a question;
  answers are bare digits.
- L2 ("Japanese"): ``c`` ``r`` ``s`` ``p`` and ``?``; answers end with ``!`` (L2's answer form).
- ``X`` asks to translate an L2 question into L1, ``Y`` an L1 question into L2.

The tokenizer adds ``<s>`` in front of every encoded text (not ``</s>``: the model writes that),
pads on the left, and decodes ids back to the same space-separated words, so the greedy
generation of a model decodes to exactly the strings the tasks use as answers.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
DIGITS = [str(d) for d in range(10)]
L1_WORDS = ["C", "R", "S", "+", "="]
L2_WORDS = ["c", "r", "s", "p", "?", "!"]
MARKERS = ["X", "Y"]
TOKENS = SPECIAL + DIGITS + L1_WORDS + L2_WORDS + MARKERS
# Embedding rows beyond the real tokens are never used; a round size keeps matmuls aligned.
VOCAB_SIZE = 32

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
TOKEN_ID = {tok: i for i, tok in enumerate(TOKENS)}


def encode(text: str) -> list[int]:
    """Ids of the words of ``text`` (no special tokens added); an unknown word is a bug here."""
    return [TOKEN_ID[w] for w in text.split()]


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :data:`TOKENS` that ``AutoTokenizer`` reloads as is."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", BOS_ID)]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with one space
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=64,
    )


def save_tokenizer(directory: str | Path) -> None:
    build_tokenizer().save_pretrained(str(directory))
