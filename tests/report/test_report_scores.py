"""The held-out chart's data: where the numbers come from, the order of the bars, the headline."""

import pytest

from evomerge.report.scores import headline, heldout_models, kind, order_models, order_tasks, plot_heldout

DEMO = {  # the demo's summary.json on the default world, rounded
    "base": {"lang": 1.0, "math": 0.521, "target": 0.577},
    "evolved": {"lang": 0.966, "math": 0.599, "target": 0.684},
    "expert:lang": {"lang": 1.0, "math": 0.027, "target": 0.025},
    "expert:math": {"lang": 0.0, "math": 1.0, "target": 0.0},
    "untuned:dare_ties": {"lang": 0.014, "math": 0.4, "target": 0.0},
    "untuned:task_arithmetic": {"lang": 0.957, "math": 0.668, "target": 0.547},
    "untuned:ties": {"lang": 0.064, "math": 0.659, "target": 0.0},
}


def test_bars_in_the_papers_order():
    models = dict(DEMO, **{"PS+DFS": {"target": 0.7}})
    assert order_models(models) == [
        "base",
        "expert:lang",
        "expert:math",
        "untuned:task_arithmetic",
        "untuned:ties",
        "untuned:dare_ties",
        "PS+DFS",
        "evolved",
    ]
    assert [kind(m) for m in ("base", "expert:x", "untuned:y", "evolved (#3)", "DFS")] == [
        "base",
        "expert",
        "untuned",
        "evolved",
        "other",
    ]
    assert order_tasks(DEMO, "target", {"math": "math", "lang": "lang"}) == ["target", "math", "lang"]


def test_headline_by_hand():
    # 0.684 − max(0.577, 0.025, 0.0) = 0.107; 0.684 − max(0.0, 0.547, 0.0) = 0.137
    assert (
        headline(DEMO, "target")
        == "evolved 0.684 on target: +0.107 over the best source, +0.137 over the best untuned merge"
    )
    assert headline({"evolved": {"target": 0.5}}, "target") == "evolved 0.5 on target"
    assert headline(DEMO, None) == ""


def test_sources_of_the_numbers():
    summary = {"models": {"base": {"t": 0.25}, "evolved": {"t": "0.5"}, "junk": 3}}
    assert heldout_models(summary, None, 7) == (
        {"base": {"t": 0.25}, "evolved": {"t": 0.5}},
        "held-out split, from summary.json",
    )
    models, note = heldout_models({}, {"id": 7, "objectives": {"t": 0.75}}, 7)
    assert models == {"evolved (#7)": {"t": 0.75}} and note.startswith("held-out split of the evolved candidate only")
    models, note = heldout_models(None, {"id": 6, "objectives": {"t": 0.75}}, 7)
    assert models == {} and "about candidate #6, not the best #7" in note
    assert heldout_models(None, None, None)[0] == {}


@pytest.mark.parametrize("models", [DEMO, {"evolved (#4)": {"target": 0.3, "math": float("nan")}}])
def test_plot_heldout_writes_a_png(tmp_path, models):
    out = plot_heldout(models, tmp_path / "h.png", target="target", skills={"math": "math"})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_heldout({}, tmp_path / "none.png") is None
