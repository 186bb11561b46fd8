"""Trains the toy world's base and experts and writes them as Hugging Face checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from evomerge.toyworld import tasks, vocab
from evomerge.toyworld.settings import Stage, WorldSettings
from evomerge.toyworld.train import Mixture, forced_exact_match, train


def model_config(s: WorldSettings):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab.VOCAB_SIZE,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.heads,
        max_position_embeddings=32,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        pad_token_id=vocab.PAD_ID,
        bos_token_id=vocab.BOS_ID,
        eos_token_id=vocab.EOS_ID,
    )


def new_model(s: WorldSettings, seed: int):
    from transformers import LlamaForCausalLM

    # The constructor draws its initial weights from torch's global generator: fork it, so that
    # building a world neither depends on nor disturbs the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(model_config(s))
    model.generation_config.pad_token_id = vocab.PAD_ID
    model.generation_config.eos_token_id = vocab.EOS_ID
    model.generation_config.bos_token_id = vocab.BOS_ID
    return model


def stage_seed(world_seed: int, role: str) -> int:
    """A distinct, stable training seed per (world seed, model role)."""
    import zlib

    return (world_seed * 1_000_003 + zlib.crc32(role.encode())) % (2**63)


def stage_mixture(stage: Stage, s: WorldSettings) -> Mixture:
    train_p, _, train_n, _ = tasks.partition(s.heldout_pairs, s.heldout_numbers, s.data_seed)
    comps = {c: tasks.component_examples(c, train_p, train_n) for c in stage.mixture}
    return Mixture(comps, stage.mixture)


def heldout_pairs_of(task: str, s: WorldSettings) -> list[tuple[str, str]]:
    pool = tasks.task_pool(task, s.heldout_pairs, s.heldout_numbers, s.data_seed)
    return [(e["prompt"], e["answer"]) for e in pool]


def evaluate(model, s: WorldSettings) -> dict[str, float]:
    """Teacher-forced exact match of ``model`` on the whole held-out pool of every task."""
    return {t: round(float(forced_exact_match(model, heldout_pairs_of(t, s)).mean()), 4) for t in s.tasks}


def parameter_group(name: str) -> str:
    """The ``Stage.trainable`` group of a Llama parameter: ``embed``, ``layers.<i>`` or ``head``."""
    if "embed_tokens" in name:
        return "embed"
    if ".layers." in name:
        return "layers." + name.split(".layers.")[1].split(".")[0]
    return "head"


def set_trainable(model, groups) -> None:
    """Train only the parameters in ``groups`` (None: all of them)."""
    for name, param in model.named_parameters():
        param.requires_grad_(groups is None or parameter_group(name) in groups)


def train_stage(model, stage: Stage, s: WorldSettings, seed: int, log=None) -> None:
    set_trainable(model, stage.trainable)
    try:
        train(
            model,
            stage_mixture(stage, s),
            steps=stage.steps,
            lr=stage.lr,
            warmup=stage.warmup,
            batch=stage.batch,
            seed=seed,
            log=log,
        )
    finally:
        set_trainable(model, None)


def save(model, directory: Path) -> None:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar per tiny checkpoint is noise in the build log
    try:
        model.save_pretrained(str(directory), safe_serialization=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    vocab.save_tokenizer(directory)


def build_models(s: WorldSettings, out: Path, log=print) -> dict:
    """Train the base, then each expert from it; write ``out/base`` and ``out/experts/<name>``.

    Returns build facts for the manifest: seconds per model and every model's held-out scores.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    facts = {"seconds": {}, "scores": {}}
    log = log or (lambda message: None)
    progress = lambda step, loss: log(f"  step {step}: answer loss {loss:.4f}")  # noqa: E731
    try:
        t0 = time.perf_counter()
        base = new_model(s, stage_seed(s.seed, "init"))
        log(f"toyworld: training base ({s.base.steps} steps)")
        train_stage(base, s.base, s, stage_seed(s.seed, "base"), log=progress)
        save(base, out / "base")
        facts["seconds"]["base"] = round(time.perf_counter() - t0, 1)
        facts["scores"]["base"] = evaluate(base, s)
        base_state = {k: v.clone() for k, v in base.state_dict().items()}
        for name, stage in s.experts.items():
            t0 = time.perf_counter()
            base.load_state_dict(base_state)
            log(f"toyworld: training expert {name!r} ({stage.steps} steps)")
            train_stage(base, stage, s, stage_seed(s.seed, f"expert:{name}"), log=progress)
            save(base, out / "experts" / name)
            facts["seconds"][name] = round(time.perf_counter() - t0, 1)
            facts["scores"][name] = evaluate(base, s)
    finally:
        torch.set_num_threads(previous_threads)
    return facts


def task_configs(s: WorldSettings) -> list[dict]:
    """The world's tasks as fitness ``TaskConfig`` dicts (generator sources, forced exact match)."""
    params = {"heldout_pairs": s.heldout_pairs, "heldout_numbers": s.heldout_numbers, "data_seed": s.data_seed}
    configs = []
    for t in s.tasks:
        pool = len(tasks.task_pool(t, **params))
        # The language task's pool (3 kinds x held-out numbers) can be smaller than the
        # arithmetic one's: validation takes what calibration leaves, up to the setting.
        validation = min(s.validation, pool - s.calibration)
        configs.append(
            {
                "name": t,
                "source": {"type": "generator", "name": f"toyworld.{t}", "params": dict(params)},
                "scorer": {"type": "exact_match_forced"},
                "splits": {"calibration": s.calibration, "validation": validation, "seed": 0},
            }
        )
    return configs


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
