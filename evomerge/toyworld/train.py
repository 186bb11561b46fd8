"""Training loop of the toy world: answer-only next-token loss on a weighted task mixture.

Each sequence is ``<s> question answer </s>``; the loss is the mean cross-entropy over the answer
tokens and ``</s>`` only (the question is context, as in instruction tuning). A batch draws its
components by their mixture weights and then examples uniformly within a component.

Optimiser: AdamW (β = 0.9 / 0.98, no weight decay), learning rate ramped linearly over
``warmup`` steps and then decayed by a cosine to 10 % of its peak,

    lr(t) = lr · t / warmup                                           for t < warmup
    lr(t) = lr · (0.1 + 0.45 · (1 + cos(π (t − warmup) / (T − warmup))))   otherwise,

gradient norm clipped at 1.0. Everything random flows from one ``torch.Generator`` seeded by
the caller, so a run is bit-for-bit repeatable on the same machine and thread count.
"""

from __future__ import annotations

import math

import torch

from evomerge.toyworld import vocab


def encode_examples(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids ``[N, L]`` of ``<s> q a </s>`` and a mask of the supervised targets.

    ``mask[i, j]`` is true where token ``j`` is to be predicted (answer and ``</s>``).
    """
    seqs, starts = [], []
    for q, a in pairs:
        qi, ai = vocab.encode(q), vocab.encode(a)
        seqs.append([vocab.BOS_ID] + qi + ai + [vocab.EOS_ID])
        starts.append(1 + len(qi))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), vocab.PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (s, st) in enumerate(zip(seqs, starts)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, st : len(s)] = True
    return ids, mask


class Mixture:
    """Weighted components, each a padded tensor of examples; samples batches from a generator."""

    def __init__(self, components: dict[str, list[tuple[str, str]]], weights: dict[str, float]):
        names = [n for n in components if weights.get(n, 0) > 0]
        ids, masks = zip(*(encode_examples(components[n]) for n in names))
        width = max(t.shape[1] for t in ids)
        pad = lambda t, v: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=v)  # noqa: E731
        self.ids = torch.cat([pad(t, vocab.PAD_ID) for t in ids])
        self.mask = torch.cat([pad(m, False) for m in masks])
        self.sizes = torch.tensor([t.shape[0] for t in ids])
        self.offsets = torch.cumsum(self.sizes, 0) - self.sizes
        w = torch.tensor([float(weights[n]) for n in names], dtype=torch.float64)
        self.probs = w / w.sum()
        self.names = names

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        comp = torch.multinomial(self.probs, batch, replacement=True, generator=gen)
        u = torch.rand(batch, generator=gen, dtype=torch.float64)
        idx = self.offsets[comp] + (u * self.sizes[comp]).long()
        ids, mask = self.ids[idx], self.mask[idx]
        width = int(mask.any(0).nonzero().max()) + 1  # drop all-padding columns
        return ids[:, :width], mask[:, :width]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.45 * (1.0 + math.cos(math.pi * progress)))


def answer_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids).logits[:, :-1]
    target = ids[:, 1:]
    keep = mask[:, 1:]
    return torch.nn.functional.cross_entropy(logits[keep], target[keep])


def train(
    model, mixture: Mixture, *, steps: int, lr: float, warmup: int, batch: int, seed: int, log=None
) -> list[float]:
    """Train ``model`` in place; return the loss of every step."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        ids, mask = mixture.sample(batch, gen)
        loss = answer_loss(model, ids, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None and (step + 1) % 100 == 0:
            log(step + 1, sum(losses[-100:]) / len(losses[-100:]))
    model.eval()
    return losses


@torch.no_grad()
def forced_exact_match(model, pairs: list[tuple[str, str]], batch: int = 512) -> torch.Tensor:
    """Per-example 1/0: does the argmax at every answer position (and ``</s>``) equal the reference?

    With teacher forcing the argmax at position j sees the reference prefix; when every argmax
    matches, greedy decoding produces exactly the reference, and when one does not, greedy
    decoding diverges there — so this equals greedy exact match, in one forward pass.
    """
    model.eval()
    out = []
    for i in range(0, len(pairs), batch):
        ids, mask = encode_examples(pairs[i : i + batch])
        pred = model(input_ids=ids).logits[:, :-1].argmax(-1)
        ok = (pred == ids[:, 1:]) | ~mask[:, 1:]
        out.append(ok.all(1).float())
    return torch.cat(out)
