"""Fixtures for the fitness tests: real HF models whose greedy outputs are known in advance.

``bigram_llama`` is a LlamaForCausalLM whose decoder layers contribute nothing (o_proj and
down_proj are zero), whose embeddings are one-hot and whose head is a chosen next-token table:
greedy decoding follows the table from the prompt's last token. ``random_*`` are random tiny
models (outputs depend on every position, so they expose padding / position-id mistakes).
"""

from __future__ import annotations

import pytest
import torch

from evomerge.testing import CHARS, SPECIAL, char_tokenizer, tiny_config

VOCAB = SPECIAL + CHARS
TOK = {t: i for i, t in enumerate(VOCAB)}
EOS = TOK["</s>"]


def successor_table() -> dict[int, int]:
    """digit d -> d+1, '9' -> EOS; letter x -> next letter, 'z' -> EOS; anything else -> '7'."""
    table = {}
    for i, t in enumerate(VOCAB):
        if t.isdigit():
            table[i] = EOS if t == "9" else TOK[str(int(t) + 1)]
        elif len(t) == 1 and t.isalpha():
            table[i] = EOS if t == "z" else TOK[chr(ord(t) + 1)]
        else:
            table[i] = TOK["7"]
    return table


def greedy_successor(prompt: str) -> str:
    """What the bigram model generates after ``prompt`` (until EOS)."""
    table = successor_table()
    tok, out = TOK[prompt[-1]], []
    while True:
        tok = table[tok]
        if tok == EOS:
            return "".join(out)
        out.append(VOCAB[tok])


def bigram_llama(table: dict[int, int], hidden: int = 64):
    from transformers import LlamaForCausalLM

    cfg = tiny_config("llama", num_layers=2, hidden=hidden)
    assert hidden >= cfg.vocab_size
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                p.zero_()
        emb = torch.zeros(cfg.vocab_size, hidden)
        emb[torch.arange(cfg.vocab_size), torch.arange(cfg.vocab_size)] = 1.0
        model.model.embed_tokens.weight.copy_(emb)
        head = torch.zeros(cfg.vocab_size, hidden)
        for src, dst in table.items():
            head[dst, src] = 1.0
        model.lm_head.weight.copy_(head)
    return model.eval()


def random_model(arch: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(arch, num_layers=2, hidden=32)
    cfg.initializer_range = 0.3  # large weights: outputs vary with every token and position
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.fixture(scope="session")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="session")
def successor_model():
    return bigram_llama(successor_table())


@pytest.fixture(scope="session")
def random_llama():
    return random_model("llama")


@pytest.fixture(scope="session")
def random_gpt2():
    return random_model("gpt2")


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The toy world's ``test`` preset (tiny; trained in seconds, once per session)."""
    from evomerge.toyworld import build_toyworld

    return build_toyworld(dir=tmp_path_factory.mktemp("toyworld") / "world", preset="test", log=None)
