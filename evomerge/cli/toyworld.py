"""``evomerge toyworld [--dir DIR] [--force] [--preset demo|test|carry] [--seed N]``: build the toy
world, or find it in the cache, and print where its models and tasks are."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "toyworld",
        help="build (or find cached) the embedded toy world: a tiny base LM and two experts",
        description="Build the toy world (a tiny base model, a 'math' and a 'lang' expert, and their "
        "tasks), or find it in the cache, and print where its models and tasks are.",
    )
    p.add_argument("--dir", default=None, help="world directory (default: ~/.cache/evomerge/toyworld/<key>)")
    p.add_argument(
        "--preset",
        default="demo",
        choices=["demo", "test", "carry"],
        help="demo: the default world (a few CPU minutes); test: a tiny one (seconds); "
        "carry: the world where every source fails the target (a few CPU minutes)",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed of the world (default: 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads while training (default: the preset's)")
    p.add_argument("--force", action="store_true", help="rebuild even if a complete world is there")
    p.add_argument("--json", action="store_true", help="print the world as one JSON object")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from evomerge.errors import ConfigError
    from evomerge.toyworld import build_toyworld
    from evomerge.toyworld.settings import preset

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: expected a positive integer, got {args.threads}")
    changes = {"seed": args.seed}
    if args.threads is not None:
        changes["threads"] = args.threads
    settings = preset(args.preset, **changes)
    world = build_toyworld(dir=args.dir, settings=settings, force=args.force, log=None if args.json else print)
    if args.json:
        print(
            json.dumps(
                {
                    "root": str(world.root),
                    "key": world.key,
                    "built": world.built,
                    "base": str(world.base),
                    "experts": {k: str(v) for k, v in world.experts.items()},
                    "tokenizer": str(world.tokenizer),
                    "tasks": world.tasks,
                    "target_task": world.target_task,
                    "expert_skills": world.expert_skills,
                    "scores": world.scores,
                },
                indent=2,
            )
        )
        return 0
    print(f"toy world {world.key} ({'built' if world.built else 'found in cache'}): {world.root}")
    print(f"  base            {world.base}")
    for name, path in world.experts.items():
        print(f"  expert {name:<8} {path}   (skill: task {world.expert_skills.get(name)!r})")
    print(f"  tasks           {world.root / 'tasks.json'}   (target: {world.target_task!r})")
    if world.scores:
        names = sorted(next(iter(world.scores.values())))
        print("  held-out exact match: " + "  ".join(f"{n:>7}" for n in names))
        for model, row in world.scores.items():
            print(f"    {model:<18} " + "  ".join(f"{row[n]:7.3f}" for n in names))
    return 0
