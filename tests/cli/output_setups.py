"""Set-ups of the outputs battery (``test_bad_inputs_outputs.py``): each prepares files under the
case's ``{tmp}`` and names them with ``env.add``."""

from __future__ import annotations

import errno
import json
import os
import shutil

import yaml
from battery import broken_folder, edit_log, edit_yaml

from evomerge.cli import main


# -- set-ups ---------------------------------------------------------------------------------
def folder_of_runs(env):
    """``{tmp}/runs`` holding the run (``{run}`` then lives inside it)."""
    runs = env["tmp"] / "runs"
    runs.mkdir()
    shutil.copytree(env.finished_run, runs / "r1", symlinks=True)
    env.add("runs", runs)


def previous_merge(env, name="prev"):
    """``{prev}``: a checkpoint ``evomerge merge`` wrote (it carries the marker)."""
    out = env["tmp"] / name
    assert main(["merge", str(env["recipe"]), "-o", str(out), "--no-progress"]) == 0
    env.add(name, out)
    return out


def merge_holding_a_run(env):
    out = previous_merge(env)
    shutil.copytree(env.finished_run, out / "inner-run", symlinks=True)


def merge_marked_as(kind):
    def setup(env):
        out = previous_merge(env)
        marker = out / ".evomerge-output.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "kind": kind}))

    return setup


def marker_is_a_link(env):
    d = env["tmp"] / "linked"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    real = env["tmp"] / "elsewhere.json"
    real.write_text(json.dumps({"kind": "hf-checkpoint"}))
    (d / ".evomerge-output.json").symlink_to(real)
    env.add("linked", d)


def user_folder(env, name="mine"):
    d = env["tmp"] / name
    d.mkdir()
    (d / "notes.txt").write_text("not evomerge's")
    env.add(name, d)


def work_dir(env):
    """``{work}``: a non-empty folder to run in (``cwd``), with ``{work}/sub`` below it."""
    w = env["tmp"] / "work"
    (w / "sub").mkdir(parents=True)
    (w / "data.txt").write_text("the user's")
    env.add("work", w)


def empty_work_dir(env):
    w = env["tmp"] / "empty-work"
    w.mkdir()
    env.add("ework", w)


def fake_home(env):
    home = env["tmp"] / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export PS1=x")
    env.monkeypatch.setenv("HOME", str(home))
    env.add("fhome", home)


def link_to(target, name):
    def setup(env):
        link = env["tmp"] / name
        link.symlink_to(env.path(target))
        env.add(name, link)

    return setup


def a_file(name, text="keep"):
    def setup(env):
        p = env["tmp"] / name
        p.write_text(text)
        env.add(name.replace(".", "_").replace("-", "_"), p)

    return setup


def steps(*fns):
    def setup(env):
        for fn in fns:
            fn(env)

    return setup


def tamper(field, value, line=0):
    def setup(env):
        def fn(records):
            records[line][field] = value

        edit_log(env, fn)

    return setup


def dataflow_best(env):
    """The run's records now hold a data-flow recipe over ``{base}`` and ``{e1}``."""

    def fn(records):
        for r in records:
            r["recipe"] = dataflow_doc(env)

    edit_log(env, fn)


def all_failed(env):
    def fn(records):
        for r in records:
            r.update(status="failed", error="boom", score=None, values=None, objectives={})

    edit_log(env, fn)


def empty_log(env):
    env["log"].write_text("")


def log_is(kind):
    def setup(env):
        log = env["log"]
        log.unlink()
        if kind == "link":
            outside = env["tmp"] / "outside.jsonl"
            outside.write_text(env.finished_run.joinpath("evaluations.jsonl").read_text())
            log.symlink_to(outside)
        elif kind == "fifo":
            os.mkfifo(log)
        else:
            log.mkdir()

    return setup


def meta_is_a_link(env):
    meta = env["run"] / "meta.json"
    outside = env["tmp"] / "meta-outside.json"
    outside.write_text(meta.read_text())
    meta.unlink()
    meta.symlink_to(outside)


def genome_outside(env):
    """The best record's genome is a file under genomes/, and genomes/ leads out of the run."""
    import numpy as np

    outside = env["tmp"] / "outside"
    outside.mkdir()
    (env["run"] / "validation.json").unlink(missing_ok=True)

    def fn(records):
        best = max((r for r in records if r["status"] == "ok"), key=lambda r: r["score"])
        np.save(outside / f"{best['id']}.npy", np.asarray(best["genome"]))
        best["genome"] = {"path": f"genomes/{best['id']}.npy"}
        env.add("best_id", best["id"])

    edit_log(env, fn)
    (env["run"] / "genomes").symlink_to(outside)


def scorer_fn(ref, module_text=None, where="cfg"):
    """The config's 'copy' task scored by the callable ``ref`` (a module written beside the config)."""

    def setup(env):
        cfg = env["cfg"]
        if module_text is not None:
            (cfg.parent / "mymod.py").write_text(module_text)

        def fn(d):
            d["fitness"]["tasks"][1]["scorer"] = {"type": "callable", "fn": ref}

        edit_yaml(cfg, fn)

    return setup


def recipe_doc(doc_fn):
    def setup(env):
        doc = yaml.safe_load(env["recipe"].read_text())
        doc_fn(doc, env)
        env["recipe"].write_text(yaml.safe_dump(doc, sort_keys=False))

    return setup


def with_run_inside(env, with_run):
    if not with_run:
        return None
    return lambda folder: shutil.copytree(env.finished_run, folder / "run", symlinks=True)


def run_without_validation(env):
    """A finished run copied into the folder, without its cached held-out scores (and without
    transformers' progress bar on stderr while the command loads the best candidate)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    env.on_teardown(hf_logging.enable_progress_bar)

    def populate(folder):
        shutil.copytree(env.finished_run, folder / "run", symlinks=True)
        (folder / "run" / "validation.json").unlink(missing_ok=True)

    return populate


def temporaries_in(name):
    """Python's temporary folder (``TMPDIR``) is ``{name}``: a full or read-only /tmp on a node."""
    import tempfile

    return lambda env: env.monkeypatch.setattr(tempfile, "tempdir", str(env[name]))


def ro(name, with_run=False):
    return lambda env: broken_folder(env, name, errno.EROFS, populate=with_run_inside(env, with_run))


def full(name):
    return lambda env: broken_folder(env, name, errno.ENOSPC)


def denied(name, with_run=False):
    return lambda env: broken_folder(env, name, errno.EACCES, populate=with_run_inside(env, with_run))


def no_stray_old_folder(env):
    assert not [p for p in env["tmp"].iterdir() if p.name.startswith("..")], "a stray ..old-* folder was left"


def pareto_with_a_user_file(env):
    """``{out}/`` holds the user's own ``candidate-<id>.yaml`` for the first Pareto member."""
    from evomerge.runs.store import RunStore
    from evomerge.runs.summary import pareto_records

    out = env["tmp"] / "front"
    out.mkdir()
    front = sorted(r["id"] for r in pareto_records(RunStore(env["run"]).read_log()))
    (out / f"candidate-{front[0]}.yaml").write_text("my notes, not a recipe\n")
    env.add("out", out)
    env.add("first", front[0])


def dataflow_recipe_file(env):
    """``{dfrecipe}``: a data-flow recipe YAML over ``{base}`` and ``{e1}``."""
    path = env["tmp"] / "dataflow.yaml"
    path.write_text(yaml.safe_dump(dataflow_doc(env), sort_keys=False))
    env.add("dfrecipe", path)


def dataflow_doc(env) -> dict:
    """A data-flow recipe over ``{base}`` (embeddings, head) and ``{e1}``."""
    return {
        "merge_method": "dataflow",
        "sources": {"A": str(env["base"]), "B": str(env["e1"])},
        "embed_from": "A",
        "path": [{"model": "A", "layer": 0}, {"model": "B", "layer": 1}, {"model": "A", "layer": 1}],
        "dtype": "float32",
    }


def nothing_left(folder):
    assert sorted(p.name for p in folder.iterdir()) == [], "a temporary was left behind"
