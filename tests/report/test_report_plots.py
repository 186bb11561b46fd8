"""The Pareto figure's geometry: which points are the front, and the staircase that bounds it."""

import numpy as np
import pytest

from evomerge.report.plots import front_staircase, plot_pareto


def test_staircase_drops_at_each_member_when_maximising():
    pts = np.array([[0.2, 1.0], [0.5, 0.6], [0.9, 0.1], [0.4, 0.5], [0.5, 0.6], [0.1, 0.1]])
    front, stairs = front_staircase(pts, np.array([1.0, 1.0]))
    # (0.4, 0.5) and (0.1, 0.1) are dominated; the duplicate (0.5, 0.6) draws once
    assert front.tolist() == [[0.2, 1.0], [0.5, 0.6], [0.9, 0.1]]
    assert stairs.tolist() == [[0.2, 1.0], [0.2, 0.6], [0.5, 0.6], [0.5, 0.1], [0.9, 0.1]]


def test_staircase_with_a_minimised_objective():
    # minimise x, maximise y: (1, 5) and (3, 9) trade off; (2, 4) is dominated by (1, 5)
    pts = np.array([[3.0, 9.0], [2.0, 4.0], [1.0, 5.0]])
    front, stairs = front_staircase(pts, np.array([-1.0, 1.0]))
    assert front.tolist() == [[3.0, 9.0], [1.0, 5.0]]
    assert stairs.tolist() == [[3.0, 9.0], [3.0, 5.0], [1.0, 5.0]]


def test_one_point_is_its_own_front():
    front, stairs = front_staircase(np.array([[0.3, 0.4]]), np.array([1.0, 1.0]))
    assert front.tolist() == stairs.tolist() == [[0.3, 0.4]]


def _rec(i, a, b, status="ok"):
    return {"id": i, "status": status, "objectives": {"a": a, "b": b}}


def test_plot_pareto_writes_a_png_with_references_and_overlay(tmp_path):
    records = [_rec(0, 0.2, 0.9), _rec(1, 0.8, 0.3), _rec(2, 0.1, 0.1), _rec(3, 0.9, 0.9, status="failed")]
    out = plot_pareto(
        records,
        ["a", "b"],
        {},
        tmp_path / "p.png",
        references={"base": (0.5, 0.5)},
        overlay={"grid": [(0.3, 0.3), (0.6, 0.2)]},
    )
    assert out == tmp_path / "p.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "names, records", [(["a"], [_rec(0, 0.1, 0.2)]), (["a", "b"], [_rec(0, 0.1, 0.2, status="failed")])]
)
def test_no_figure_without_two_objectives_or_ok_points(tmp_path, names, records):
    assert plot_pareto(records, names, {}, tmp_path / "p.png") is None
    assert not (tmp_path / "p.png").exists()


def _rec3(i, a, b, c):
    return {"id": i, "status": "ok", "objectives": {"a": a, "b": b, "c": c}}


def test_front_in_three_objectives_is_not_a_projection():
    from evomerge.report.pareto_matrix import front_points

    # #2 is dominated in the (a, b) plane by #0 but wins on c; #3 is dominated by #0 in all three
    records = [_rec3(0, 0.9, 0.9, 0.1), _rec3(1, 0.1, 0.2, 0.3), _rec3(2, 0.5, 0.5, 0.9), _rec3(3, 0.8, 0.8, 0.05)]
    records.append({"id": 4, "status": "ok", "objectives": {"a": 1.0, "b": "nan", "c": 1.0}})  # not finite: left out
    pts, mask, ids = front_points(records, ["a", "b", "c"], {})
    assert ids == [0, 1, 2, 3] and mask.tolist() == [True, False, True, False]
    # minimising c: #3 (c = 0.05) is no longer dominated by #0
    _, mask, _ = front_points(records, ["a", "b", "c"], {"c": "minimize"})
    assert mask.tolist() == [True, False, False, True]


def test_pareto_matrix_png_only_for_three_or_more(tmp_path):
    from evomerge.report.pareto_matrix import plot_pareto_matrix

    records = [_rec3(i, i / 10, 1 - i / 10, (i % 3) / 3) for i in range(10)]
    assert plot_pareto_matrix(records, ["a", "b"], {}, tmp_path / "two.png") is None
    out = plot_pareto_matrix(records, ["a", "b", "c"], {}, tmp_path / "three.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
