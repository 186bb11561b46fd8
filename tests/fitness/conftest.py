"""Fixtures for the fitness tests: tiny HF models trained for a few seconds to memorise a handful
of prompt -> answer pairs, so exact-match scores on known outputs are known in advance."""

from __future__ import annotations

import random

import pytest
import torch

from evomerge.testing import build_model, char_tokenizer

# prompt -> answer pairs the trained models memorise (loss on answer + EOS only).
MEMORISED = {f"{a}+{b}=": str(a + b) for a, b in [(12, 34), (55, 21), (70, 8), (33, 33), (91, 4), (16, 60),
                                                    (45, 45), (27, 13), (80, 19), (64, 2), (38, 51), (22, 77)]}


def train_memoriser(arch: str, pairs: dict[str, str], *, steps: int = 250, seed: int = 0, hidden: int = 64):
    tok = char_tokenizer()
    model = build_model(arch, seed=seed, hidden=hidden, num_layers=2)
    rows = []
    for prompt, answer in pairs.items():
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((p + a, [-100] * len(p) + a))
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        mask[i, :len(x)] = 1
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok


@pytest.fixture(scope="session")
def memorised_llama():
    return train_memoriser("llama", MEMORISED)


@pytest.fixture(scope="session")
def memorised_gpt2():
    return train_memoriser("gpt2", MEMORISED)


def addition_rows(n: int = 60, seed: int = 0) -> list[dict]:
    """Memorised pairs first, then unseen additions (the models get most of those wrong)."""
    rows = [{"id": f"m{i}", "prompt": p, "answer": a} for i, (p, a) in enumerate(MEMORISED.items())]
    rng = random.Random(seed)
    while len(rows) < n:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if f"{a}+{b}=" not in MEMORISED:
            rows.append({"id": f"u{len(rows)}", "prompt": f"{a}+{b}=", "answer": str(a + b)})
    return rows
