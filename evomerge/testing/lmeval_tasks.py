"""lm-evaluation-harness task files over local rows, for tests and benchmarks (no download).

:func:`write_harness_tasks` writes ``rows.jsonl`` (rows with ``prompt``, ``answer``, ``opts``,
``gold`` and no ``id``, so native example ids are row indices like the harness's document
indices) and one harness task per output type over it, ``<prefix>_gen`` (``generate_until``,
metric ``exact_match``), ``<prefix>_ll`` (``loglikelihood`` of the answer + ``</s>``, metric
``acc`` = is-greedy) and ``<prefix>_mc`` (``multiple_choice``, ``acc`` and ``acc_norm``).
:data:`NATIVE` holds the native task settings that compute the same per-example scores.
"""

from __future__ import annotations

import json
from pathlib import Path

_HEADER = "task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
_BODIES = {
    "gen": 'output_type: generate_until\ndoc_to_text: "{{prompt}}"\ndoc_to_target: "{{answer}}"\n'
    'generation_kwargs:\n  until: ["</s>"]\n  max_gen_toks: 8\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n',
    "ll": 'output_type: loglikelihood\ndoc_to_text: "{{prompt}}"\ndoc_to_target: "{{answer}}</s>"\n'
    'target_delimiter: ""\nmetric_list:\n  - metric: acc\n',
    "mc": 'output_type: multiple_choice\ndoc_to_text: "{{prompt}}"\ndoc_to_choice: "{{opts}}"\ndoc_to_target: gold\n'
    'target_delimiter: ""\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n',
}
_CHOICES = {"fields": {"choices": "opts", "label": "gold"}}
#: per kind: the harness task's suffix, its ``params``, and the native task computing the same scores
NATIVE = {
    "gen": ("gen", {}, {"scorer": {"type": "exact_match", "max_new_tokens": 8, "stop": ["</s>"], "strip": False}}),
    "ll": ("ll", {}, {"scorer": {"type": "exact_match_forced"}}),
    "mc": ("mc", {}, {**_CHOICES, "scorer": {"type": "choice_loglik"}}),
    "mc_norm": ("mc", {"metric": "acc_norm"}, {**_CHOICES, "scorer": {"type": "choice_loglik", "normalize": "chars"}}),
}


def choice_rows(rows: list[dict]) -> list[dict]:
    """``prompt``/``answer`` rows with 3 choices each: the answer and two other rows' answers, the
    answer at position ``i % 3``."""
    out = []
    for i, r in enumerate(rows):
        others = [rows[(i + 7) % len(rows)]["answer"], rows[(i + 13) % len(rows)]["answer"]]
        opts = others[: i % 3] + [r["answer"]] + others[i % 3 :]
        out.append({"prompt": r["prompt"], "answer": r["answer"], "opts": opts, "gold": i % 3})
    return out


def write_harness_tasks(folder: Path, rows: list[dict], prefix: str = "toy") -> Path:
    """``folder/rows.jsonl`` and ``folder/tasks/<prefix>_{gen,ll,mc}.yaml``; returns the tasks folder."""
    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = folder / "tasks"
    tasks.mkdir(exist_ok=True)
    for kind, body in _BODIES.items():
        name = f"{prefix}_{kind}"
        (tasks / f"{name}.yaml").write_text(_HEADER.format(name=name, data=data) + body)
    return tasks


def paired_tasks(kinds, splits: dict, prefix: str = "toy") -> list[dict]:
    """Fitness task configs ``h_<kind>`` (the harness task) and ``n_<kind>`` (native) per kind,
    relative to the folder :func:`write_harness_tasks` wrote."""
    out = []
    for kind in kinds:
        suffix, params, native = NATIVE[kind]
        source = {"type": "lmeval", "task": f"{prefix}_{suffix}", "include_path": "tasks", "params": params}
        out.append({"name": f"h_{kind}", "source": source, "splits": splits})
        out.append({"name": f"n_{kind}", "source": {"type": "jsonl", "path": "rows.jsonl"}, "splits": splits, **native})
    return out
