"""``evomerge report`` on hand-written run directories: which figures are drawn, that the page
embeds exactly those files, and that missing pieces become notes, never errors."""

import base64
import json
import re
import struct
import time

import pytest
from report_fixtures import best_of, ps_run, psdfs_run, write_run

from evomerge.cli import main
from evomerge.report import report


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def embedded(index) -> list[bytes]:
    """The bytes of every image on the page; the page names no other resource."""
    text = index.read_text()
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(srcs) == text.count("<img ")
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<script|<link|url\(|src=\"(?!data:)|href=\"http", text)
    return [base64.b64decode(s.split(",", 1)[1]) for s in srcs]


def records_of(run):
    return [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]


def check_figures(index, names):
    """``names`` are the PNGs written, each embedded byte for byte, sizes sane."""
    out = index.parent
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
    pictures = embedded(index)
    assert sorted(pictures) == sorted((out / n).read_bytes() for n in names)
    for data in pictures:
        w, h = png_size(data)
        assert 300 <= w <= 2200 and 150 <= h <= 2600, (w, h)


def test_ps_run_with_reference_models(tmp_path):
    run = ps_run(tmp_path / "run")
    t0 = time.perf_counter()
    index = report(run)
    assert time.perf_counter() - t0 < 20  # seconds, even on a busy 2-core machine
    check_figures(index, ["heldout.png", "progress.png", "pareto.png", "recipe_heatmap.png"])
    text = index.read_text()
    summary = json.loads((run / "summary.json").read_text())
    for model, scores in summary["models"].items():  # the numbers under the chart
        assert f"<td>{model}</td>" in text
        assert f"<td class='n'>{scores['target']:.4g}</td>" in text
    assert f"candidate #{best_of(records_of(run))['id']}" in text


def test_held_out_of_the_evolved_candidate_alone(tmp_path):
    run = ps_run(tmp_path / "run", n_objectives=2, with_summary=False, with_validation=True)
    index = report(run)
    check_figures(index, ["heldout.png", "progress.png", "pareto.png", "recipe_heatmap.png"])
    validation = json.loads((run / "validation.json").read_text())
    text = index.read_text()
    assert f"<td>evolved (#{validation['id']})</td>" in text
    assert "from validation.json" in text


def test_no_held_out_scores_is_a_note(tmp_path):
    run = ps_run(tmp_path / "run", n_objectives=1, with_summary=False)
    index = report(run)
    check_figures(index, ["progress.png", "recipe_heatmap.png"])  # one objective: no front
    assert "no held-out scores yet: run `evomerge status --validate RUN`" in index.read_text()


def test_validation_of_another_candidate_is_not_shown_as_the_best(tmp_path):
    run = ps_run(tmp_path / "run", n_objectives=1, with_summary=False)
    best = best_of(records_of(run))["id"]
    (run / "validation.json").write_text(json.dumps({"id": best + 1, "objectives": {"target": 0.9}}))
    index = report(run)
    assert "heldout.png" not in [p.name for p in index.parent.iterdir()]
    assert f"validation.json is about candidate #{best + 1}, not the best #{best}" in index.read_text()


def test_sequential_psdfs_draws_both_stages(tmp_path):
    run = psdfs_run(tmp_path / "run")
    index = report(run)
    check_figures(index, ["progress.png", "ps_recipe_heatmap.png", "dfs_layer_path.png"])
    text = index.read_text()
    recs = records_of(run)
    ps_best = best_of([r for r in recs if r["meta"]["stage"] == "ps"])
    dfs_best = best_of([r for r in recs if r["meta"]["stage"] == "dfs"])
    assert f"<tr><td>PS</td><td>40 / 40</td><td>#{ps_best['id']}</td>" in text
    assert f"<tr><td>DFS</td><td>30 / 30</td><td>#{dfs_best['id']}</td>" in text
    assert "Best recipe of stage PS" in text and "Best recipe of stage DFS" in text
    # the DFS winner's model A is the PS winner: drawn once, and said so
    assert dfs_best["recipe"]["sources"]["A"] == ps_best["recipe"]
    assert f"source A of #{dfs_best['id']} (a merge) is the recipe of candidate #{ps_best['id']}" in text
    steps = " → ".join(
        f"{s['model']}{s['layer']}" + (f" ×{s['scale']:.2f}" if abs(s["scale"] - 1) > 5e-3 else "")
        for s in dfs_best["recipe"]["path"]
    )
    assert steps in text


def test_a_run_still_in_its_first_stage(tmp_path):
    index = report(psdfs_run(tmp_path / "run", dfs_started=False))
    check_figures(index, ["progress.png", "ps_recipe_heatmap.png"])
    text = index.read_text()
    assert "<tr><td>DFS</td><td>0 / 30</td><td>none yet</td>" in text
    assert "stage DFS has no ok evaluation yet" in text


def test_odd_but_valid_json_still_gives_a_page(tmp_path):
    """A run directory is data: odd values are drawn around, not trusted."""
    recs = [
        {"id": 0, "status": "ok", "score": 0.5, "objectives": {"t": 0.5}, "recipe": "not a mapping"},
        {"id": 1, "status": "ok", "score": 0.6, "objectives": {"t": "nan"}, "recipe": {"path": [["A", "x"]]}},
        {"id": 2, "status": "failed", "score": None, "objectives": None, "meta": {"stage": 3}},
        {"id": 3, "status": "ok", "score": 0.7, "objectives": {"t": 0.7}, "recipe": {"models": [{"model": 1}]}},
    ]
    run = write_run(tmp_path / "run", recs, {"objectives": "nope", "stages": "nope", "space": []})
    (run / "summary.json").write_text(json.dumps({"models": ["a list"]}))
    index = report(run)
    check_figures(index, ["progress.png"])
    assert "the recipe sets no per-model or global parameter to draw" in index.read_text()


def test_cli_prints_the_page_and_refuses_an_empty_log(tmp_path, capsys):
    run = ps_run(tmp_path / "run", n=12)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report" / "index.html")
    empty = write_run(tmp_path / "empty", [], {})
    assert main(["report", str(empty)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {empty / 'evaluations.jsonl'} holds no evaluations yet; nothing to report"
    )


@pytest.mark.parametrize("missing", ["meta.json", "evaluations.jsonl"])
def test_compare_runs_are_overlaid(tmp_path, missing):
    run = ps_run(tmp_path / "run", n=20, n_objectives=1, with_summary=False)
    other = ps_run(tmp_path / "other", n=15, n_objectives=1, with_summary=False, seed=4)
    (other / missing).unlink()  # a compared run with no meta / no log still draws (or skips) quietly
    index = report(run, compare=[other])
    check_figures(index, ["progress.png", "compare.png", "recipe_heatmap.png"])
