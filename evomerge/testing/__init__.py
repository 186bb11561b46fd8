"""Tiny models and tokenizers for tests, examples and benchmarks — built in code, never downloaded.

``build_family(root, arch)`` writes a base and two experts (base + a seeded perturbation, so
their task vectors are real and distinct) as ordinary Hugging Face directories with a
character-level tokenizer that ``AutoTokenizer`` loads.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHARS = list("0123456789abcdefghijklmnopqrstuvwxyz+-=?!. ")
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


def char_tokenizer():
    """A character-level fast tokenizer: one token per character, ids stable across calls."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",  # decoder-only generation pads on the left; saved with the tokenizer
    )
    return fast


#: The chat tokenizer's vocabulary: specials, Llama-3-style turn markers, then printable ASCII and "\n".
CHAT_SPECIAL = ["<pad>", "<|begin_of_text|>", "<|end_of_text|>", "<unk>"]
CHAT_MARKERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_CHARS = [chr(c) for c in range(32, 127)] + ["\n"]
CHAT_VOCAB = CHAT_SPECIAL + CHAT_MARKERS + CHAT_CHARS

#: A Llama-3-style chat template: BOS, then one ``<|start_header_id|>role<|end_header_id|>\n\n``
#: header per message, its trimmed content and ``<|eot_id|>``; the generation prompt opens an
#: assistant turn.
LLAMA3_STYLE_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def chat_tokenizer(chat_template: str | None = LLAMA3_STYLE_TEMPLATE):
    """A character-level fast tokenizer with a real chat template (Llama-3 style, no download).

    Like Llama's, it puts BOS (``<|begin_of_text|>``) in front of every text it encodes with
    special tokens, and the template writes BOS itself: a rendered chat must be encoded without
    special tokens or it gets two. EOS is ``<|eot_id|>``, the end of an assistant turn. Ids:
    :data:`CHAT_VOCAB` in order. ``chat_template=None`` gives the same tokenizer without one.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(CHAT_VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHAT_SPECIAL + CHAT_MARKERS])
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    bos = CHAT_SPECIAL[1]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token=bos,
        eos_token="<|eot_id|>",
        unk_token="<unk>",
        padding_side="left",
        chat_template=chat_template,
    )


def tiny_config(arch: str = "llama", num_layers: int = 2, hidden: int = 32, vocab_size: int | None = None):
    from transformers import GPT2Config, LlamaConfig

    vocab_size = vocab_size or len(SPECIAL) + len(CHARS)
    if arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=False,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=num_layers,
            n_head=4,
            n_positions=128,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}")


def build_model(arch: str = "llama", seed: int = 0, **config_kwargs):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, **config_kwargs))
    return model.eval()


def build_family(
    root: str | Path, arch: str = "llama", n_experts: int = 2, scale: float = 0.02, **config_kwargs
) -> dict:
    """Write ``base``, ``expert_1`` … ``expert_n`` under ``root``; return their paths.

    Expert k = base + N(0, scale²) noise drawn with seed k, on every tensor.
    """
    root = Path(root)
    tokenizer = char_tokenizer()
    base = build_model(arch, seed=0, **config_kwargs)
    paths = {"base": root / "base", "experts": []}
    base.save_pretrained(paths["base"])
    tokenizer.save_pretrained(paths["base"])
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    for k in range(1, n_experts + 1):
        gen = torch.Generator().manual_seed(1000 + k)
        with torch.no_grad():
            for name, param in base.named_parameters():
                param.copy_(base_state[name] + scale * torch.randn(param.shape, generator=gen))
        out = root / f"expert_{k}"
        base.save_pretrained(out)
        tokenizer.save_pretrained(out)
        paths["experts"].append(out)
    return paths
