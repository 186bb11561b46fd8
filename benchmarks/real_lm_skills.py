"""The real-LM world's data and experts: two real-text skills for SmolLM2-135M-Instruct, made in code.

* skill ``arith``: arithmetic word problems ("Tom has 12 apples and gets 7 more. ..."), answered
  the GSM8K way: ``12 + 7 = 19`` then ``#### 19``;
* skill ``json``: small word questions (first / last word of a list, which word names an animal,
  a fruit, ...) under a system prompt asking for JSON, answered ``{"answer": "dog"}``;
* the target, both at once: the arithmetic problems under the JSON system prompt, answered
  ``{"answer": 19}``. Neither expert is trained on it.

Every question is put in one bucket by a hash of its text (train 4/5, held-out 1/5), so no held-out
question is ever trained on; the target's questions are held-out arithmetic questions.

Experts are full fine-tunes of the decoder layers (the tied embedding / LM head is frozen), on
CPU, one thread, the loss on the assistant's reply only (the LM head runs on those positions alone).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

JSON_SYSTEM = 'Reply with JSON only, in the form {"answer": ...}.'
#: what each skill's held-out answers are read with (the fitness config's ``extract``)
JSON_ANSWER = r'^\s*\{\s*"answer"\s*:\s*"?([^"{}]*?)"?\s*\}\s*$'

NAMES = ["Tom", "Anna", "Ben", "Maria", "Li", "Sara", "Omar", "Kai", "Emma", "Noah", "Yuki", "Ravi"]
OBJECTS = ["apples", "books", "marbles", "coins", "stickers", "pencils", "cookies", "cards", "shells", "stamps"]
ADD = [
    "{n} has {a} {o}. {n} gets {b} more. How many {o} does {n} have now?",
    "{n} had {a} {o} and found {b} more. How many {o} does {n} have?",
    "There are {a} {o} in a box. {n} puts in {b} more. How many {o} are in the box?",
]
SUB = [
    "{n} has {a} {o} and gives {b} to a friend. How many {o} does {n} have left?",
    "{n} had {a} {o}. {n} lost {b} of them. How many {o} are left?",
    "There are {a} {o} in a box. {n} takes out {b}. How many {o} are in the box now?",
]
CATEGORIES = {
    "an animal": ["dog", "cat", "horse", "cow", "lion", "mouse", "bird", "fish", "sheep", "tiger"],
    "a fruit": ["apple", "banana", "pear", "grape", "lemon", "cherry", "mango", "peach", "plum", "orange"],
    "a color": ["red", "blue", "green", "yellow", "purple", "black", "white", "pink", "brown", "gray"],
    "a vehicle": ["car", "bus", "train", "bike", "truck", "boat", "plane", "taxi", "tram", "ship"],
}
OTHER = ["chair", "spoon", "table", "window", "pillow", "hammer", "lamp", "door", "shoe", "clock", "cup", "book"]


def held_out(question: str) -> bool:
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 5 == 0


def arith_items(n: int, seed: int) -> list[dict]:
    """Distinct word problems: ``{"question", "number"}`` (the answer); + with a 2..40, b 1..20,
    - with b < a."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        add = rng.random() < 0.5
        a, b = rng.randint(2, 40), rng.randint(1, 20)
        if not add and b >= a:
            continue
        q = rng.choice(ADD if add else SUB).format(n=rng.choice(NAMES), o=rng.choice(OBJECTS), a=a, b=b)
        if q in seen:
            continue
        seen.add(q)
        c = a + b if add else a - b
        out.append({"question": q, "number": str(c), "work": f"{a} {'+' if add else '-'} {b} = {c}"})
    return out


def json_items(n: int, seed: int) -> list[dict]:
    """Distinct word questions: ``{"question", "word"}``."""
    rng, seen, out = random.Random(seed), set(), []
    words = [w for ws in CATEGORIES.values() for w in ws] + OTHER
    while len(out) < n:
        kind = rng.randrange(3)
        if kind < 2:
            items = rng.sample(words, rng.randint(3, 5))
            q = f"What is the {'first' if kind == 0 else 'last'} word in this list: {', '.join(items)}?"
            word = items[0] if kind == 0 else items[-1]
        else:
            cat = rng.choice(sorted(CATEGORIES))
            word = rng.choice(CATEGORIES[cat])
            items = [*rng.sample(OTHER, 2), word]
            rng.shuffle(items)
            q = f"Which of these is {cat}: {', '.join(items)}?"
        if q in seen:
            continue
        seen.add(q)
        out.append({"question": q, "word": word})
    return out


def split(items: list[dict]) -> tuple[list[dict], list[dict]]:
    train = [it for it in items if not held_out(it["question"])]
    return train, [it for it in items if held_out(it["question"])]


def chats(skill: str, items: list[dict]) -> list[list[dict]]:
    """Training conversations of a skill."""
    out = []
    for it in items:
        if skill == "arith":
            reply = f"{it['work']}\n#### {it['number']}"
            out.append([{"role": "user", "content": it["question"]}, {"role": "assistant", "content": reply}])
        else:
            reply = json.dumps({"answer": it["word"]})
            out.append(
                [
                    {"role": "system", "content": JSON_SYSTEM},
                    {"role": "user", "content": it["question"]},
                    {"role": "assistant", "content": reply},
                ]
            )
    return out


def write_tasks(data_dir: Path, n_eval: int = 240, seed: int = 0) -> dict[str, Path]:
    """The held-out pools as JSONL (``question``, ``answer``): ``arith``, ``json``, ``target``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _, arith = split(arith_items(6 * n_eval, seed))
    _, words = split(json_items(6 * n_eval, seed + 1))
    rows = {
        "arith": [{"id": f"a{i}", "question": it["question"], "answer": it["number"]} for i, it in enumerate(arith)],
        "json": [{"id": f"j{i}", "question": it["question"], "answer": it["word"]} for i, it in enumerate(words)],
        "target": [{"id": f"t{i}", "question": it["question"], "answer": it["number"]} for i, it in enumerate(arith)],
    }
    paths = {}
    for name, rs in rows.items():
        paths[name] = data_dir / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rs[:n_eval]))
    return paths


def encode_chat(tok, messages: list[dict]) -> tuple[list[int], int]:
    """``(ids, start)``: the conversation's ids and where the assistant's reply begins."""
    prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = prompt + messages[-1]["content"] + "<|im_end|>"
    ids = tok(full, add_special_tokens=False)["input_ids"]
    return list(ids), len(tok(prompt, add_special_tokens=False)["input_ids"])


def finetune(model, tok, skill: str, *, steps: int, batch: int, lr: float, seed: int, log=print) -> dict:
    """Fine-tune ``model`` in place on ``skill`` (AdamW, linear warm-up then cosine decay)."""
    import torch

    items = arith_items(4000, seed) if skill == "arith" else json_items(4000, seed + 1)
    convs = chats(skill, split(items)[0])
    random.Random(seed).shuffle(convs)
    for p in model.model.embed_tokens.parameters():
        p.requires_grad_(False)  # tied to the LM head: both stay the base's
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))),
    )
    pad = tok.pad_token_id
    model.train()
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        rows = [encode_chat(tok, c) for c in convs[step * batch : (step + 1) * batch]]
        width = max(len(ids) for ids, _ in rows)
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(x)
        wanted = torch.zeros_like(x, dtype=torch.bool)
        for r, (ids, start) in enumerate(rows):
            x[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
            wanted[r, start - 1 : len(ids) - 1] = True  # position k predicts token k + 1
        targets = x[:, 1:][wanted[:, :-1]]
        hidden = model.model(input_ids=x, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[wanted])
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if step % 10 == 0 or step == steps - 1:
            log(f"  {skill} step {step + 1}/{steps} loss {losses[-1]:.3f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return {
        "skill": skill,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "first_loss": losses[0],
        "last_loss": sum(losses[-5:]) / len(losses[-5:]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
