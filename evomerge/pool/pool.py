"""The model pool: a base and N experts, validated together, read lazily, task vectors cached.

For a base θ_0 and experts θ_1 … θ_N of one architecture, the pool serves, per tensor name,

- ``tensor(m, name)``: θ_m[name] cast to the pool's dtype and device;
- ``delta(m, name)``: the task vector τ_m[name] = θ_m[name] − θ_0[name], computed once in the pool's
  dtype on its device and kept (``cache=True``) so that repeated merges — one per search candidate —
  never re-read or re-subtract the checkpoints.

Memory: without ``preload`` only what a merge asks for is materialized. With ``cache=True`` that is
what the method reads — the base and the N task vectors, or the N + 1 raw tensors for methods on raw
weights (linear, slerp): the working set of repeated merges, (N + 1) × model size in the pool dtype;
with ``cache=False`` (one-shot merges, e.g. :func:`evomerge.merge.materialize.materialize`)
tensors stream one at a time from the memory-mapped files and nothing is kept. ``preload=True``
reads every tensor of every model into memory up front.

Placement: ``device`` is where the pool keeps what it caches (the *store*), ``compute_device``
where task vectors are computed (the device that merges; default the store), ``pin`` pins a CPU
store's tensors for fast copies to a GPU. A run decides these from the headers before any weight is
read (:mod:`evomerge.merge.placement`, :meth:`ModelPool.place`): everything on the GPU, or the base
and task vectors in pinned CPU memory, streamed to the GPU per tensor. Task vectors are always
computed on the compute device, so an offloaded pool holds exactly what a resident one would.

The pool is models on disk and their tensors only: what the merge engine derives from them across
merges (sparsifier state, whole-model thresholds) is the engine's (:mod:`evomerge.merge.cache`).
:meth:`ModelPool.from_checkpoints` builds a pool over checkpoints held in memory (benchmarks).

Validation happens in the constructor, before any merge: every model has the base's architecture
(``config.architectures`` and ``model_type``), the same tensor names, and the same shapes; the first
mismatch raises :class:`~evomerge.errors.ModelError` naming the model, the tensor and both shapes.
No weight is NaN or inf (:mod:`evomerge.pool.finite`: one chunked pass over the mapped files).

Tied embeddings: when the config ties the output embedding to the input one (GPT-2's ``lm_head``
to ``transformer.wte``), a checkpoint may or may not store the alias; the pool drops it so that the
shared tensor is merged — and written — once, as ``from_pretrained`` would tie it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from evomerge.errors import ModelError
from evomerge.pool.finite import check_pool_finite
from evomerge.pool.lazy import LazyCheckpoint
from evomerge.pool.resolve import resolve_model

_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")


class ModelPool:
    """A validated set of checkpoints of one architecture; see the module docstring.

    ``base``: id of the base model (a directory or hub id) or ``None`` for base-free methods
    (``linear``); ``models``: the other models' ids, in recipe order.
    """

    def __init__(
        self,
        base: str | None,
        models: list[str],
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        preload: bool = False,
        cache: bool = True,
        compute_device: str | torch.device | None = None,
        pin: bool = False,
    ):
        base, ids = _ids(base, models)
        dirs = {m: resolve_model(m) for m in ([base] if base is not None else []) + ids}
        checkpoints = {m: LazyCheckpoint(d, label=m) for m, d in dirs.items()}
        configs = {m: _read_config(d, m) for m, d in dirs.items()}
        self._setup(base, ids, checkpoints, configs, dirs, device, dtype, cache, compute_device, pin)
        self.config = _load_hf_config(self.dirs[self.reference], self.reference)
        self._finish(preload)

    @classmethod
    def from_checkpoints(
        cls,
        base: str | None,
        models: list[str],
        checkpoints: Mapping[str, Any],
        config: dict,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        cache: bool = True,
        compute_device: str | torch.device | None = None,
        pin: bool = False,
    ) -> ModelPool:
        """A pool over checkpoints held in memory (``checkpoints[id]``: objects with
        :class:`~evomerge.pool.lazy.LazyCheckpoint`'s ``keys``, ``meta``, ``shape`` and ``get``), all
        of the architecture ``config`` (a ``config.json`` dict): benchmarks and tests build models
        of real shapes without writing them. Validated like a pool on disk."""
        from transformers import AutoConfig

        base, ids = _ids(base, models)
        pool = cls.__new__(cls)
        every = ([base] if base is not None else []) + ids
        pool._setup(
            base, ids, dict(checkpoints), {m: config for m in every}, {}, device, dtype, cache, compute_device, pin
        )
        settings = {k: v for k, v in config.items() if k != "model_type"}
        pool.config = AutoConfig.for_model(config["model_type"], **settings)
        pool._finish(False)
        return pool

    def _setup(self, base, ids, checkpoints, configs, dirs, device, dtype, cache, compute_device, pin) -> None:
        self.base = base
        self.models = list(dict.fromkeys(m for m in ids if m != base))
        self.device = torch.device(device)
        self.compute_device = torch.device(compute_device) if compute_device is not None else self.device
        self.pin = bool(pin)
        self.dtype = dtype
        self.cache_enabled = cache
        self.reference = base if base is not None else ids[0]
        self.ids = ([base] if base is not None else []) + self.models
        self.dirs: dict[str, Path] = dirs
        self._ckpt = checkpoints
        self._config_dicts = configs
        self._validate_architecture()

    def _finish(self, preload: bool) -> None:
        self.tied = _tied_aliases(self.config, self._config_dicts[self.reference])
        self.tensor_names: list[str] = self._validate_tensors()
        self.num_layers = self._num_layers()
        check_pool_finite(self)  # NaN or inf in a source weight: one line now, not NaN merges later

        self._tensors: dict[tuple[str, str], torch.Tensor] = {}
        self._deltas: dict[tuple[str, str], torch.Tensor] = {}
        if preload:
            for m in self.ids:
                for name in self.tensor_names:
                    self._tensors[(m, name)] = self._read(m, name)

    def place(
        self, device: str | torch.device, *, compute_device: str | torch.device | None = None, pin: bool = False
    ) -> None:
        """Keep tensors on ``device`` (the store), compute task vectors on ``compute_device``
        (default: the store), pinned when ``pin`` (a CPU store feeding a GPU). Before anything is
        cached: a placement is decided from the headers, before any weight is read."""
        if self._tensors or self._deltas:
            raise RuntimeError("ModelPool.place after tensors were cached")  # a bug in the caller
        self.device = torch.device(device)
        self.compute_device = torch.device(compute_device) if compute_device is not None else self.device
        self.pin = bool(pin)

    # --- validation ----------------------------------------------------------------------------
    def _validate_architecture(self) -> None:
        ref = self._config_dicts[self.reference]
        ref_arch = (tuple(ref.get("architectures") or ()), ref.get("model_type"))
        for m in self.ids:
            cfg = self._config_dicts[m]
            arch = (tuple(cfg.get("architectures") or ()), cfg.get("model_type"))
            if arch != ref_arch:
                raise ModelError(
                    f"model '{m}': architecture {_arch_text(arch)} differs from "
                    f"{self._ref_role()} '{self.reference}': {_arch_text(ref_arch)}"
                )

    def _names_of(self, m: str) -> list[str]:
        names = self._ckpt[m].keys()
        present = set(names)
        # Drop a tied alias only when the tensor it aliases is stored too.
        return [n for n in names if not (n in self.tied and self.tied[n] in present)]

    def _validate_tensors(self) -> list[str]:
        ref_names = self._names_of(self.reference)
        ref_set = set(ref_names)
        for m in self.ids:
            if m == self.reference:
                continue
            names = self._names_of(m)
            name_set = set(names)
            missing = [n for n in ref_names if n not in name_set]
            extra = [n for n in names if n not in ref_set]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise ModelError(
                    f"model '{m}': tensor '{missing[0]}' of {self._ref_role()} '{self.reference}' is missing{more}"
                )
            if extra:
                more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
                raise ModelError(
                    f"model '{m}': tensor '{extra[0]}' is not in {self._ref_role()} '{self.reference}'{more}"
                )
            for n in ref_names:
                got, want = self._ckpt[m].shape(n), self._ckpt[self.reference].shape(n)
                if got != want:
                    raise ModelError(
                        f"model '{m}': tensor '{n}' has shape {_shape_text(got)}, "
                        f"{self._ref_role()} '{self.reference}' has {_shape_text(want)}"
                    )
        return ref_names

    def _ref_role(self) -> str:
        return "base" if self.base is not None else "first model"

    def _num_layers(self) -> int:
        n = getattr(self.config, "num_hidden_layers", None)
        if isinstance(n, int) and n > 0:
            return n
        indices = [int(mt.group(1)) for name in self.tensor_names if (mt := _LAYER_RE.search(name))]
        return max(indices) + 1 if indices else 1

    # --- access --------------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        return self._ckpt[self.reference].shape(name)

    def stored_dtype(self, name: str) -> torch.dtype:
        return self._ckpt[self.reference].meta(name)[1]

    def directory(self, model_id: str) -> Path:
        return self.dirs[model_id]

    @property
    def reference_dir(self) -> Path:
        """Where config, tokenizer and generation config of a merge come from (base, else first model)."""
        if self.reference not in self.dirs:
            raise ModelError(f"model pool: '{self.reference}' is held in memory, not in a directory")
        return self.dirs[self.reference]

    def stored(self, model_id: str, name: str) -> torch.Tensor:
        """θ_model[name] exactly as stored (its file dtype, CPU); for non-float tensors."""
        return self._ckpt[model_id].get(name)

    def _read(self, model_id: str, name: str, device: torch.device | None = None) -> torch.Tensor:
        if model_id not in self._ckpt:
            raise KeyError(f"model {model_id!r} is not in the pool")
        t = self._ckpt[model_id].get(name).to(device=device or self.device, dtype=self.dtype)
        return self._pinned(t) if device is None else t

    def _pinned(self, t: torch.Tensor) -> torch.Tensor:
        if self.pin and t.device.type == "cpu" and not t.is_pinned():
            return t.pin_memory()
        return t

    def tensor(self, model_id: str, name: str) -> torch.Tensor:
        """θ_model[name] in the pool's dtype/device, kept when caching. Read-only by contract."""
        key = (model_id, name)
        t = self._tensors.get(key)
        if t is None:
            t = self._read(model_id, name)
            if self.cache_enabled:
                self._tensors[key] = t
        return t

    def delta(self, model_id: str, name: str) -> torch.Tensor:
        """τ_model[name] = θ_model[name] − θ_base[name], computed once (when caching). Read-only.

        The expert's raw tensor is read for the subtraction and dropped (unless already held), so
        a method working on deltas keeps base + N task vectors, not base + N experts + N deltas.
        """
        if self.base is None:
            raise ModelError(f"model pool has no base model: task vector of '{model_id}' is undefined")
        key = (model_id, name)
        d = self._deltas.get(key)
        if d is None:
            # computed where merges run, whatever the store: an offloaded pool holds the very
            # task vectors a resident one would
            compute = self.compute_device
            expert = self._tensors.get(key)
            expert = expert.to(compute) if expert is not None else self._read(model_id, name, compute)
            d = expert - self.tensor(self.base, name).to(compute)
            if d.device != self.device:
                d = self._pinned(d.to(self.device))
            if self.cache_enabled:
                self._deltas[key] = d
        return d

    def warm(self, deltas: bool = True) -> None:
        """Fill the caches now: base tensors and every task vector (``deltas``), else every raw tensor."""
        for name in self.tensor_names:
            if deltas and self.base is not None:
                self.tensor(self.base, name)
                for m in self.models:
                    self.delta(m, name)
            else:
                for m in self.ids:
                    self.tensor(m, name)

    def clear_cache(self) -> None:
        self._tensors.clear()
        self._deltas.clear()

    def cached_bytes(self) -> int:
        """Bytes of cached tensors and task vectors."""
        seen = {}
        for t in list(self._tensors.values()) + list(self._deltas.values()):
            seen[t.data_ptr()] = t.numel() * t.element_size()
        return sum(seen.values())

    def numel(self) -> int:
        total = 0
        for name in self.tensor_names:
            n = 1
            for s in self.shape(name):
                n *= s
            total += n
        return total

    def __repr__(self) -> str:
        return (
            f"ModelPool(base={self.base!r}, models={self.models!r}, tensors={len(self.tensor_names)}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def _ids(base: str | None, models: list[str]) -> tuple[str | None, list[str]]:
    ids = [str(m) for m in models]
    if base is not None:
        base = str(base)
    if base is None and not ids:
        raise ModelError("model pool: no models given")
    return base, ids


def _read_config(directory: Path, label: str) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise ModelError(f"model '{label}': no config.json in {directory}")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"model '{label}': cannot read {path}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"model '{label}': {path} is not a JSON object")
    return cfg


def _load_hf_config(directory: Path, label: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(directory))
    except Exception as exc:  # unknown model_type, malformed fields
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model '{label}': cannot read its config.json: {first}") from None


def _tied_aliases(config, config_dict: dict) -> dict[str, str]:
    """{alias tensor name: tensor it is tied to} when the config ties the embeddings, else {}."""
    if not getattr(config, "tie_word_embeddings", False):
        return {}
    aliases: dict[str, str] = {}
    archs = config_dict.get("architectures") or []
    if archs:
        try:
            import transformers

            cls = getattr(transformers, archs[0], None)
        except Exception:  # pragma: no cover - transformers always importable here
            cls = None
        keys = getattr(cls, "_tied_weights_keys", None) if cls is not None else None
        if isinstance(keys, dict):
            aliases.update({str(k): str(v) for k, v in keys.items()})
    if not aliases:
        # Older transformers list only the alias; the usual pairs cover the common families.
        aliases = {"lm_head.weight": "model.embed_tokens.weight"}
        if config_dict.get("model_type") == "gpt2":
            aliases = {"lm_head.weight": "transformer.wte.weight"}
    return aliases


def _arch_text(arch: tuple) -> str:
    names, model_type = arch
    return f"{'/'.join(names) or '?'} ({model_type or '?'})"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"
