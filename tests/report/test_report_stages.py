"""The stage contract (evomerge/report/stages.py) and the numbering of evaluations across stages."""

import pytest
from report_fixtures import psdfs_run, record, write_run

from evomerge.report.plots import stage_spans
from evomerge.report.stages import Stage, read_stages
from evomerge.runs.store import RunStore


def rec(i, stage=None, score=0.5):
    return record(i, {"t": score}, {"merge_method": "linear"}, names=["t"], stage=stage)


def test_stages_from_records_in_order_of_first_appearance(tmp_path):
    recs = [rec(0, "ps"), rec(1, "ps"), rec(2, "dfs"), rec(3), rec(4, "dfs")]
    stages = read_stages(tmp_path, {}, recs)
    assert [(s.name, [r["id"] for r in s.records]) for s in stages] == [("ps", [0, 1]), ("dfs", [2, 4])]


@pytest.mark.parametrize("recs", [[rec(0), rec(1)], [rec(0, "ps"), rec(1, "ps")]])
def test_one_stage_is_a_plain_run(tmp_path, recs):
    assert read_stages(tmp_path, {}, recs) == []


def test_listed_stages_keep_their_order_labels_and_budgets(tmp_path):
    run = psdfs_run(tmp_path / "run", n_ps=5, n_dfs=4)
    recs = RunStore(run).read_log()
    meta = {
        "stages": [{"name": "ps", "label": "PS", "max_evals": 5}, {"name": "dfs", "max_evals": 4, "kind": "dataflow"}]
    }
    stages = read_stages(run, meta, recs)
    assert [(s.name, s.label, s.kind, s.max_evals, len(s.records)) for s in stages] == [
        ("ps", "PS", None, 5, 5),
        ("dfs", "dfs", "dataflow", 4, 4),
    ]


def test_a_stage_that_ran_in_another_run_directory(tmp_path):
    """A finished PS run named as model A: this run's untagged log is the DFS stage."""
    write_run(tmp_path / "ps", [rec(i, score=0.1 * i) for i in range(3)], {})
    dfs_recs = [rec(i, score=0.5) for i in range(4)]
    meta = {"stages": [{"name": "ps", "run_dir": "../ps"}, {"name": "dfs"}]}
    dfs = write_run(tmp_path / "dfs", dfs_recs, meta)
    stages = read_stages(dfs, meta, dfs_recs)
    assert [(s.name, len(s.records)) for s in stages] == [("ps", 3), ("dfs", 4)]
    assert stages[0].best["id"] == 2 and stages[0].notes == []
    gone = read_stages(
        dfs, {"stages": [{"name": "ps", "run_dir": str(tmp_path / "nowhere")}, {"name": "dfs"}]}, dfs_recs
    )
    assert gone[0].records == [] and gone[0].notes == [f"no evaluations found in {tmp_path / 'nowhere'}"]


def test_spans_number_evaluations_across_stages():
    def st(n, budget):
        return Stage("s", [rec(i) for i in range(n)], max_evals=budget)

    # finished stages span their records (early stopping used 30 of 40); the running one its budget
    assert stage_spans([st(30, 40), st(10, 25)]) == [(1, 30), (31, 55)]
    # not started yet: its budget, at least one slot
    assert stage_spans([st(40, 40), st(0, 30)]) == [(1, 40), (41, 70)]
    assert stage_spans([st(3, None), st(0, None)]) == [(1, 3), (4, 4)]
