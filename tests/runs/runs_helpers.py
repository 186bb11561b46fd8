import json

import yaml


def write_tasks(root):
    """Two tiny JSONL tasks the char tokenizer can spell: 'add' and 'copy', scored by NLL."""
    add = [{"q": f"{a}+{b}=", "a": str(a + b)} for a in range(10) for b in range(3)]
    copy = [{"q": f"c{w}=", "a": w} for w in ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op", "qr", "st", "uv", "wx"]]
    for name, rows in (("add", add), ("copy", copy)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def tiny_config(root, family, **over):
    """A run config over a tiny model family (paths relative to the config file where possible)."""
    write_tasks(root)
    task = lambda n, cal, val: {  # noqa: E731
        "name": n,
        "source": {"type": "jsonl", "path": f"{n}.jsonl"},
        "fields": {"prompt": "q", "answer": "a"},
        "scorer": {"type": "nll"},
        "splits": {"calibration": cal, "validation": val, "seed": 0},
    }
    cfg = {
        "models": {
            "base": str(family["base"]),
            "experts": {"e1": str(family["experts"][0]), "e2": str(family["experts"][1])},
        },
        "space": {"kind": "parameter", "method": "ties", "layer_groups": 2, "params": ["weight", "density"]},
        "driver": {"name": "cmaes", "options": {"population_size": 4}},
        "fitness": {
            "tasks": [task("add", 12, 8), task("copy", 6, 6)],
            "objectives": [{"task": "add"}, {"task": "copy", "weight": 0.5}],
        },
        "budget": {"max_evals": 8},
        "run": {"seed": 0},
    }
    for k, v in over.items():
        cfg[k] = v
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
