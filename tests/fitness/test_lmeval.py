"""The lm-evaluation-harness adapter on a harness task defined on a local file (needs the [lmeval] extra)."""

import json

import pytest

pytest.importorskip("lm_eval")

from evomerge.errors import ConfigError  # noqa: E402
from evomerge.fitness import Fitness  # noqa: E402


def test_harness_task_scores_equal_native_choice_scores(tmp_path, random_llama, tok):
    rows = [{"q": f"{i}+{i}=", "opts": [str(2 * i), str(2 * i + 1), "x"], "gold": i % 3} for i in range(20)]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "evm_mc.yaml").write_text(
        "task: evm_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'mc.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{q}}"\ndoc_to_choice: "{{opts}}"\ndoc_to_target: gold\ntarget_delimiter: ""\n'
        "metric_list:\n  - metric: acc\n"
    )
    fit = Fitness.from_dict(
        {
            "tasks": [
                {
                    "name": "harness",
                    "source": {"type": "lmeval", "task": "evm_mc", "include_path": "tasks"},
                    "splits": {"calibration": 8, "seed": 0},
                },
                {
                    "name": "native",
                    "source": {"type": "jsonl", "path": "mc.jsonl"},
                    "fields": {"prompt": "q", "choices": "opts", "label": "gold"},
                    "scorer": {"type": "choice_loglik"},
                    "splits": {"calibration": 8, "seed": 0},
                },
            ]
        },
        base_dir=tmp_path,
    )
    res = fit.evaluate(random_llama, tok, "calibration")
    h, n = res.tasks["harness"], res.tasks["native"]
    assert h.example_ids == n.example_ids and h.scores == n.scores  # same docs, same per-doc accuracy
    assert h.tokens > 0 and fit.tasks["harness"].bounded
    with pytest.raises(ConfigError, match=r"^task 'x': unknown lm-eval task 'nope' \(include_path "):
        Fitness.from_dict(
            {"tasks": [{"name": "x", "source": {"type": "lmeval", "task": "nope", "include_path": "tasks"}}]},
            base_dir=tmp_path,
        )
