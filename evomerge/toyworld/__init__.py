"""The embedded toy world: a tiny base LM and two experts on different skills, built in minutes.

A miniature of "Japanese chat model + English math model → a merge that does math in
Japanese" (see :mod:`evomerge.toyworld.tasks` for the languages and skills):

- ``base``: a 4-layer Llama trained on both languages' copy / reverse / successor, on
  translation between them, and — weakly — on addition in both;
- ``experts["math"]``: the base fine-tuned on L1 addition ("English math");
- ``experts["lang"]``: the base fine-tuned on L2 tasks ("Japanese chat");
- tasks ``math``, ``lang`` (each expert's own skill) and ``target`` (L2 addition), on held-out
  inputs, as fitness task configs.

Use::

    from evomerge.toyworld import build_toyworld
    world = build_toyworld()                 # cached under ~/.cache/evomerge/toyworld/<key>
    world.base, world.experts["math"], world.tasks, world.target_task
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from evomerge.errors import ConfigError
from evomerge.toyworld import fitness_tasks  # noqa: F401  (registers the toyworld.* generators)
from evomerge.toyworld.cache import MANIFEST, build_atomically, read_manifest, world_dir
from evomerge.toyworld.settings import FORMAT_VERSION, PRESETS, WorldSettings, preset

__all__ = ["PRESETS", "ToyWorld", "WorldSettings", "build_toyworld", "open_toyworld", "preset"]


@dataclass(frozen=True)
class ToyWorld:
    root: Path
    base: Path
    experts: dict[str, Path]
    tokenizer: Path
    tasks: list[dict]
    target_task: str
    expert_skills: dict[str, str]
    key: str
    settings: WorldSettings
    scores: dict = field(default_factory=dict)  # model -> task -> held-out forced exact match
    built: bool = False  # True when this call trained it, False when found in the cache

    def task(self, name: str) -> dict:
        for t in self.tasks:
            if t["name"] == name:
                return t
        raise KeyError(name)

    def fitness_config(self, objectives: list[str] | None = None) -> dict:
        """A fitness config mapping (tasks + one maximised objective per named task)."""
        names = objectives or [self.target_task]
        return {"tasks": [dict(t) for t in self.tasks], "objectives": [{"task": n} for n in names]}


def build_toyworld(
    dir: str | Path | None = None,
    preset: str = "demo",
    force: bool = False,
    seed: int = 0,
    settings: WorldSettings | None = None,
    log=print,
) -> ToyWorld:
    """Find the toy world of these settings, or train and cache it; return where everything is.

    ``dir``: the world's directory (default ``~/.cache/evomerge/toyworld/<key>``); ``preset``:
    ``"demo"`` (the default world, a few CPU minutes) or ``"test"`` (tiny, seconds); ``seed``:
    the world's training seed; ``settings``: full settings instead of a preset; ``force``:
    rebuild even when a complete world is there.
    """
    from evomerge.toyworld.settings import preset as preset_settings

    s = settings if settings is not None else preset_settings(preset, seed=seed)
    s.check()
    key = s.key()
    root = world_dir(key, dir)

    def build(tmp: Path) -> None:
        from evomerge.toyworld.builder import build_models, task_configs, write_json

        t0 = time.perf_counter()
        facts = build_models(s, tmp, log=log)
        manifest = {
            "key": key,
            "format_version": FORMAT_VERSION,
            "settings": s.to_dict(),
            "base": "base",
            "experts": {name: f"experts/{name}" for name in s.experts},
            "tokenizer": "base",
            "tasks": task_configs(s),
            "target_task": s.target_task,
            "expert_skills": dict(s.expert_skills),
            "scores": facts["scores"],
            "build_seconds": {**facts["seconds"], "total": round(time.perf_counter() - t0, 1)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(tmp / "tasks.json", manifest["tasks"])
        write_json(tmp / MANIFEST, manifest)  # last: its presence marks the world complete

    built = build_atomically(root, key, build, force=force)
    m = read_manifest(root)
    return ToyWorld(
        root=root,
        base=root / m["base"],
        experts={k: root / v for k, v in m["experts"].items()},
        tokenizer=root / m["tokenizer"],
        tasks=m["tasks"],
        target_task=m["target_task"],
        expert_skills=m["expert_skills"],
        key=key,
        settings=WorldSettings.from_dict(m["settings"]),
        scores=m.get("scores", {}),
        built=built,
    )


def open_toyworld(dir: str | Path, log=print) -> ToyWorld:
    """The complete toy world already in ``dir`` (built by any settings), never rebuilt: a folder
    without a readable manifest, or whose manifest's key does not match its settings, is one line."""
    manifest = read_manifest(Path(dir))
    if manifest is None:
        raise ConfigError(f"{dir}: no toy world here (no readable {MANIFEST})")
    settings = WorldSettings.from_dict(manifest["settings"])
    if settings.key() != manifest.get("key"):
        raise ConfigError(
            f"{dir}: manifest key {manifest.get('key')} does not match its settings ({settings.key()}); "
            "refusing to rebuild it"
        )
    return build_toyworld(dir=dir, settings=settings, log=log)
