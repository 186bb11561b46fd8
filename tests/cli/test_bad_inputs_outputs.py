"""The outputs battery: destructive ``--force``, tampered logs, OS errors, bad flags and callables.

Every case (the harness: ``tests/cli/battery.py``) runs one ``evomerge`` command in-process and
asserts its one ``error:`` line, exit status 2, no traceback, every protected tree byte-identical
afterwards (sha256 of every file, before and after) and no output left behind. Each one is an
input a user (or a tampered run directory) can really give; the ``--force`` cases name what
v1 destroyed: a folder of runs, the run directory, ``.``, ``$HOME``, a source model.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil

import pytest
import yaml
from battery import Case, broken_folder, case_id, edit_log, edit_yaml, run_case

from evomerge.cli import main

FORCE_RUN = "; --force never replaces a run directory, anything in one, or a folder that holds one"
FORCE_SOURCE = "; --force never replaces a source model or a folder that holds one"
NOT_OURS = (
    ": not an evomerge output (no .evomerge-output.json); --force replaces only what evomerge wrote "
    "(move it away yourself, or choose another output)"
)
NOT_OUR_FILE = (
    ": not a file evomerge writes in this format; --force replaces only an earlier evomerge output "
    "(move it away yourself, or choose another output)"
)
NEVER = "; evomerge never writes over it: choose a new or empty folder"


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
            r["recipe"] = {
                "merge_method": "dataflow",
                "sources": {"A": str(env["base"]), "B": str(env["e1"])},
                "embed_from": "A",
                "path": [{"model": "A", "layer": 0}, {"model": "B", "layer": 1}, {"model": "A", "layer": 1}],
                "dtype": "float32",
            }

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


def _with_run(env, with_run):
    if not with_run:
        return None
    return lambda folder: shutil.copytree(env.finished_run, folder / "run", symlinks=True)


def ro(name, with_run=False):
    return lambda env: broken_folder(env, name, errno.EROFS, populate=_with_run(env, with_run))


def full(name):
    return lambda env: broken_folder(env, name, errno.ENOSPC)


def denied(name, with_run=False):
    return lambda env: broken_folder(env, name, errno.EACCES, populate=_with_run(env, with_run))


def _no_stray_old_folder(env):
    assert not [p for p in env["tmp"].iterdir() if p.name.startswith("..")], "a stray ..old-* folder was left"


# Every writing command, into a folder that fails the way a real one does: (name, argv, output, what).
OS_TARGETS = [
    ("merge", "merge {recipe} -o {F}/out --no-progress", "{F}/out", "writing the merged checkpoint"),
    ("export-recipe", "export {run} -o {F}/best.yaml", "{F}/best.yaml", "writing the recipe YAML"),
    ("export-mergekit", "export {run} --format mergekit -o {F}/mk.yaml", "{F}/mk.yaml", "writing the mergekit YAML"),
    ("export-hf", "export {run} --format hf -o {F}/model", "{F}/model", "writing the merged checkpoint"),
    ("run", "run {cfg} --run-dir {F}/new", "{F}/new", "creating the run directory"),
    ("toyworld", "toyworld --preset test --dir {F}/world", "{F}/world", "writing the toy world"),
]
# (case name, folder placeholder, strerror, set-up of the folder)
OS_FAILURES = [
    ("read-only-folder", "rofs", "Read-only file system", lambda env: broken_folder(env, "rofs", errno.EROFS)),
    ("permission-denied", "locked", "Permission denied", lambda env: broken_folder(env, "locked", errno.EACCES)),
    ("below-a-file", "notes_txt", "Not a directory", a_file("notes.txt")),
]


def _os_case(target, failure) -> Case:
    name, argv, out, what = target
    kind, folder, strerror, make = failure
    fill = lambda t: t.replace("{F}", "{" + folder + "}")  # noqa: E731
    needs_cfg = "{cfg}" in argv
    return Case(
        f"os-{name}-{kind}",
        fill(argv),
        f"error: {fill(out)}: {strerror} (while {what})",
        setup=steps(lambda env: env["cfg"], make) if needs_cfg else make,  # the config before the folder breaks
        absent=[fill(out)],
        protect=["{notes_txt}"] if folder == "notes_txt" else [],
    )


def _full_disk_case(target) -> Case:
    name, argv, out, what = target
    fill = lambda t: t.replace("{F}", "{disk}")  # noqa: E731
    return Case(
        f"os-{name}-full-disk",
        fill(argv),
        f"error: {fill(out)}: No space left on device (while {what})",
        setup=full("disk"),
        absent=[fill(out)],
        after=lambda env: _nothing_left(env["disk"]),  # no temporary left on the full disk
    )


OS_CASES = [
    *(_os_case(t, f) for f in OS_FAILURES for t in OS_TARGETS),
    *(_full_disk_case(t) for t in OS_TARGETS if t[0] in ("merge", "export-hf")),
    Case(
        "os-report-on-a-read-only-run",
        "report {rofs}/run",
        "error: {rofs}/run/report: Read-only file system (while writing the report)",
        setup=ro("rofs", with_run=True),
        protect=["{rofs}/run"],
    ),
    Case(
        "os-report-permission-denied",
        "report {locked}/run",
        "error: {locked}/run/report: Permission denied (while writing the report)",
        setup=denied("locked", with_run=True),
        protect=["{locked}/run"],
    ),
]

MODELS = "{tmp}/models"
RUN = ["{run}"]

CASES = [
    # ---- merge -o DIR --force: what v1 destroyed -------------------------------------------
    Case(
        "merge-force-onto-the-run-dir",
        "merge {recipe} -o {run} --force",
        "error: {run}: is the run directory" + FORCE_RUN,
        protect=RUN,
    ),
    Case(
        "merge-force-into-a-run-dirs-best",
        "merge {recipe} -o {run}/best --force",
        "error: {run}/best: is inside the run directory {run}" + FORCE_RUN,
        protect=RUN,
    ),
    Case(
        "merge-force-onto-a-folder-of-runs",
        "merge {recipe} -o {runs} --force",
        "error: {runs}: holds the run directory {runs}/r1" + FORCE_RUN,
        setup=folder_of_runs,
        protect=["{runs}"],
    ),
    Case(
        "merge-force-onto-the-current-dir",
        "merge {recipe} -o . --force",
        "error: .: is the current directory" + NEVER,
        setup=work_dir,
        cwd="{work}",
        protect=["{work}"],
    ),
    Case(
        "merge-onto-an-empty-current-dir",
        "merge {recipe} -o .",
        "error: .: is the current directory" + NEVER,
        setup=empty_work_dir,
        cwd="{ework}",
        protect=["{ework}"],
        after=_no_stray_old_folder,
    ),
    Case(
        "merge-force-onto-the-parent-dir",
        "merge {recipe} -o .. --force",
        "error: ..: holds the current directory ({work}/sub)" + NEVER,
        setup=work_dir,
        cwd="{work}/sub",
        protect=["{work}"],
    ),
    Case(
        "merge-force-onto-home",
        "merge {recipe} -o {fhome} --force",
        "error: {fhome}: is your home directory" + NEVER,
        setup=fake_home,
        protect=["{fhome}"],
    ),
    Case(
        "merge-force-onto-home-tilde",
        "merge {recipe} -o ~ --force",
        "error: {fhome}: is your home directory" + NEVER,
        setup=fake_home,
        protect=["{fhome}"],
    ),
    Case("merge-force-onto-root", "merge {recipe} -o / --force", "error: /: is the root directory" + NEVER),
    Case(
        "merge-force-onto-a-source-model",
        "merge {recipe} -o {e1} --force",
        "error: {e1}: is the source model" + FORCE_SOURCE,
        protect=[MODELS],
    ),
    Case(
        "merge-force-onto-the-base-model",
        "merge {recipe} -o {base} --force",
        "error: {base}: is the source model" + FORCE_SOURCE,
        protect=[MODELS],
    ),
    Case(
        "merge-force-onto-a-folder-of-source-models",
        "merge {recipe} -o {tmp}/models --force",
        "error: {tmp}/models: holds the source model {base}" + FORCE_SOURCE,
        protect=[MODELS],
    ),
    Case(
        "merge-force-onto-a-link-to-a-source-model",
        "merge {recipe} -o {elink} --force",
        "error: {elink}: is the source model" + FORCE_SOURCE,
        setup=lambda env: link_to("{e1}", "elink")(env),
        protect=[MODELS, "{elink}"],
    ),
    Case(
        "merge-force-onto-a-link-to-the-run-dir",
        "merge {recipe} -o {rlink} --force",
        "error: {rlink}: is the run directory" + FORCE_RUN,
        setup=link_to("{run}", "rlink"),
        protect=RUN + ["{rlink}"],
    ),
    Case(
        "merge-force-onto-a-users-folder",
        "merge {recipe} -o {mine} --force",
        "error: {mine}" + NOT_OURS,
        setup=user_folder,
        protect=["{mine}"],
    ),
    Case(
        "merge-force-onto-an-output-holding-a-run",
        "merge {recipe} -o {prev} --force",
        "error: {prev}: holds the run directory {prev}/inner-run" + FORCE_RUN,
        setup=merge_holding_a_run,
        protect=["{prev}"],
    ),
    Case(
        "merge-force-onto-a-report",
        "merge {recipe} -o {prev} --force",
        "error: {prev}: holds an evomerge report, not a hf-checkpoint; --force replaces only an output of the same kind",
        setup=merge_marked_as("report"),
        protect=["{prev}"],
    ),
    Case(
        "merge-force-onto-a-forged-marker-link",
        "merge {recipe} -o {linked} --force",
        "error: {linked}" + NOT_OURS,
        setup=marker_is_a_link,
        protect=["{linked}"],
    ),
    Case(
        "merge-without-force-onto-an-output",
        "merge {recipe} -o {prev}",
        "error: {prev}: output directory is not empty; pass --force to replace it",
        setup=previous_merge,
        protect=["{prev}"],
    ),
    Case(
        "merge-onto-a-file",
        "merge {recipe} -o {notes_txt} --force",
        "error: output '{notes_txt}' exists and is not a directory",
        setup=a_file("notes.txt"),
        protect=["{notes_txt}"],
    ),
    # ---- export --format hf --force ---------------------------------------------------------
    Case(
        "export-hf-force-onto-the-run-dir",
        "export {run} --format hf -o {run} --force",
        "error: {run}: is the run directory" + FORCE_RUN,
        protect=RUN,
    ),
    Case(
        "export-hf-force-onto-a-folder-of-runs",
        "export {runs}/r1 --format hf -o {runs} --force",
        "error: {runs}: holds the run directory {runs}/r1" + FORCE_RUN,
        setup=folder_of_runs,
        protect=["{runs}"],
    ),
    Case(
        "export-hf-force-onto-the-current-dir",
        "export {run} --format hf -o . --force",
        "error: .: is the current directory" + NEVER,
        setup=work_dir,
        cwd="{work}",
        protect=["{work}"],
    ),
    Case(
        "export-hf-force-onto-a-users-folder",
        "export {run} --format hf -o {mine} --force",
        "error: {mine}" + NOT_OURS,
        setup=user_folder,
        protect=["{mine}"],
    ),
    Case(
        "export-hf-dataflow-force-onto-a-source-model",
        "export {run} --format hf -o {e1} --force",
        "error: {e1}: is the source model" + FORCE_SOURCE,
        setup=dataflow_best,
        protect=[MODELS],
    ),
    Case(
        "export-hf-dataflow-force-onto-the-models-folder",
        "export {run} --format hf -o {tmp}/models --force",
        "error: {tmp}/models: holds the source model {base}" + FORCE_SOURCE,
        setup=dataflow_best,
        protect=[MODELS],
    ),
    # ---- export --format recipe / mergekit --force ------------------------------------------
    Case(
        "export-recipe-force-onto-the-log",
        "export {run} -o {log} --force",
        "error: {log}: is inside the run directory {run}" + FORCE_RUN,
        protect=RUN,
    ),
    Case(
        "export-recipe-force-onto-the-runs-config",
        "export {run} -o {run}/config.yaml --force",
        "error: {run}/config.yaml: is inside the run directory {run}" + FORCE_RUN,
        protect=RUN,
    ),
    Case(
        "export-mergekit-force-onto-best-recipe",
        "export {run} --format mergekit -o {run}/best/recipe.yaml --force",
        "error: {run}/best/recipe.yaml: is inside the run directory {run}" + FORCE_RUN,
        protect=RUN,
    ),
    Case(
        "export-recipe-force-onto-a-link-to-the-log",
        "export {run} -o {loglink} --force",
        "error: {loglink}: is inside the run directory {run}" + FORCE_RUN,
        setup=link_to("{log}", "loglink"),
        protect=RUN + ["{loglink}"],
    ),
    Case(
        "export-recipe-force-onto-a-users-text-file",
        "export {run} -o {notes_txt} --force",
        "error: {notes_txt}" + NOT_OUR_FILE,
        setup=a_file("notes.txt", "my notes\n"),
        protect=["{notes_txt}"],
    ),
    Case(
        "export-recipe-force-onto-a-models-config-json",
        "export {run} -o {base}/config.json --force",
        "error: {base}/config.json" + NOT_OUR_FILE,
        protect=[MODELS],
    ),
    Case(
        "export-mergekit-force-onto-a-run-config-yaml",
        "export {run} --format mergekit -o {cfg} --force",
        "error: {cfg}" + NOT_OUR_FILE,
        protect=["{cfg}"],
    ),
    Case(
        "export-recipe-force-onto-a-yaml-list",
        "export {run} -o {list_yaml} --force",
        "error: {list_yaml}" + NOT_OUR_FILE,
        setup=a_file("list.yaml", "- merge_method\n- ties\n"),
        protect=["{list_yaml}"],
    ),
    Case(
        "export-recipe-without-force-onto-a-recipe",
        "export {run} -o {recipe}",
        "error: {recipe}: output file exists; pass --force to replace it",
        protect=["{recipe}"],
    ),
    Case(
        "export-recipe-force-onto-the-current-dir",
        "export {run} -o . --force",
        "error: output . is a directory; this format writes one YAML file: give a file name",
        setup=work_dir,
        cwd="{work}",
        protect=["{work}"],
    ),
    Case(
        "export-pareto-onto-a-file",
        "export {run} --which pareto -o {notes_txt} --force",
        "error: --which pareto writes one file per candidate: -o must be a directory, got file {notes_txt}",
        setup=a_file("notes.txt"),
        protect=["{notes_txt}"],
    ),
    Case(
        "export-pareto-force-with-one-users-file-writes-nothing",
        "export {run} --which pareto -o {out} --force",
        "error: {out}/candidate-{first}.yaml" + NOT_OUR_FILE,
        setup=lambda env: _pareto_with_a_user_file(env),
        protect=["{out}"],
    ),
    # ---- the log is data, not a path --------------------------------------------------------
    Case(
        "log-id-is-a-path",
        "export {run} --which pareto -o {tmp}/front",
        "error: {log}: line 1 is not a valid evaluation record (field 'id': expected a non-negative integer, "
        "got 'x/../../../escaped'); the log is damaged",
        setup=tamper("id", "x/../../../escaped"),
        absent=["{tmp}/front", "{tmp}/escaped.yaml", "{tmp}/../escaped.yaml"],
    ),
    Case(
        "log-id-is-negative",
        "status {run}",
        "error: {log}: line 2 is not a valid evaluation record (field 'id': expected a non-negative integer, got -1); "
        "the log is damaged",
        setup=tamper("id", -1, line=1),
    ),
    Case(
        "log-id-is-a-bool",
        "export {run} -o {tmp}/o.yaml",
        "error: {log}: line 1 is not a valid evaluation record (field 'id': expected a non-negative integer, got True); "
        "the log is damaged",
        setup=tamper("id", True),
        absent=["{tmp}/o.yaml"],
    ),
    Case(
        "log-id-is-a-float",
        "report {run}",
        "error: {log}: line 1 is not a valid evaluation record (field 'id': expected a non-negative integer, got 1.5); "
        "the log is damaged",
        setup=tamper("id", 1.5),
        absent=["{run}/report"],
    ),
    Case(
        "log-status-is-a-number",
        "status {run}",
        "error: {log}: line 1 is not a valid evaluation record (field 'status': expected a string, got 3); "
        "the log is damaged",
        setup=tamper("status", 3),
    ),
    Case(
        "log-asked-is-a-string",
        "status {run}",
        "error: {log}: line 1 is not a valid evaluation record (field 'asked': expected a non-negative integer, "
        "got '3'); the log is damaged",
        setup=tamper("asked", "3"),
    ),
    Case(
        "log-genome-path-climbs-out",
        "status {run}",
        "error: {log}: line 1 is not a valid evaluation record (field 'genome.path': expected a file under genomes/ "
        "of the run directory, got '../../../etc/passwd'); the log is damaged",
        setup=tamper("genome", {"path": "../../../etc/passwd"}),
    ),
    Case(
        "log-per-example-path-is-absolute",
        "export {run} -o {tmp}/o.yaml",
        "error: {log}: line 1 is not a valid evaluation record (field 'per_example.path': expected a file under "
        "per_example/ of the run directory, got '/etc/passwd'); the log is damaged",
        setup=tamper("per_example", {"path": "/etc/passwd"}),
        absent=["{tmp}/o.yaml"],
    ),
    Case(
        "log-per-example-path-climbs-inside-its-folder",
        "report {run}",
        "error: {log}: line 2 is not a valid evaluation record (field 'per_example.path': expected a file under "
        "per_example/ of the run directory, got 'per_example/../../x.json'); the log is damaged",
        setup=tamper("per_example", {"path": "per_example/../../x.json"}, line=1),
    ),
    Case(
        "log-genome-folder-is-a-link-out",
        "status {run} --validate",
        "error: {run}/genomes/{best_id}.npy: leads outside the run directory (to {tmp}/outside/{best_id}.npy); "
        "evomerge does not follow it",
        setup=genome_outside,
    ),
    Case(
        "log-is-a-symlink",
        "status {run}",
        "error: {log}: is a symbolic link; evomerge reads the evaluation log only from a regular file in the run directory",
        setup=log_is("link"),
        protect=["{tmp}/outside.jsonl"],
    ),
    Case(
        "log-is-a-symlink-resume",
        "resume {run}",
        "error: {log}: is a symbolic link; evomerge reads the evaluation log only from a regular file in the run directory",
        setup=log_is("link"),
        protect=["{tmp}/outside.jsonl"],
    ),
    Case(
        "log-is-a-fifo",
        "export {run} -o {tmp}/o.yaml",
        "error: {log}: is not a regular file; expected the evaluation log",
        setup=log_is("fifo"),
        absent=["{tmp}/o.yaml"],
    ),
    Case(
        "log-is-a-directory",
        "status {run}",
        "error: {log}: is not a regular file; expected the evaluation log",
        setup=log_is("dir"),
    ),
    Case(
        "meta-is-a-symlink",
        "report {run}",
        "error: {run}/meta.json: is a symbolic link; evomerge reads meta.json only from a regular file in the run directory",
        setup=meta_is_a_link,
        absent=["{run}/report"],
    ),
    Case(
        "export-no-successful-candidate",
        "export {run} -o {tmp}/o.yaml",
        "error: {run}: no successful evaluation yet; nothing to export",
        setup=all_failed,
        absent=["{tmp}/o.yaml"],
    ),
    Case(
        "report-empty-log",
        "report {run}",
        "error: {log} holds no evaluations yet; nothing to report",
        setup=empty_log,
        absent=["{run}/report"],
    ),
    Case(
        "export-failed-candidate",
        "export {run} --which 1 -o {tmp}/o.yaml",
        "error: candidate 1 failed (boom); only successful candidates can be exported",
        setup=all_failed,
        absent=["{tmp}/o.yaml"],
    ),
    # ---- OS errors: one line, exit 2 --------------------------------------------------------
    *OS_CASES,
    Case(
        "os-report-folder-is-a-file",
        "report {run}",
        "error: {run}/report: is a file, not an earlier evomerge report directory; --force does not replace it",
        setup=lambda env: (env["run"] / "report").write_text("my own report"),
        protect=RUN,
    ),
    Case(
        "report-folder-holds-user-files",
        "report {run}",
        "error: {run}/report" + NOT_OURS,
        setup=lambda env: (env["run"] / "report").mkdir() or (env["run"] / "report" / "draft.md").write_text("mine"),
        protect=RUN,
    ),
    Case(
        "os-recipe-unreadable-is-a-directory",
        "merge {tmp} -o {tmp}/out",
        re.compile(r"error: {tmp}.*"),
        absent=["{tmp}/out"],
    ),
    # ---- CLI flags ---------------------------------------------------------------------------
    Case(
        "flags-merge-shard-size-zero",
        "merge {recipe} -o {tmp}/out --max-shard-size 0",
        "error: --max-shard-size: expected a size like 500MB or 2GB, got '0'",
        absent=["{tmp}/out"],
    ),
    Case(
        "flags-merge-shard-size-unit",
        "merge {recipe} -o {tmp}/out --max-shard-size 2PB",
        "error: --max-shard-size: expected a size like 500MB or 2GB, got '2PB'",
        absent=["{tmp}/out"],
    ),
    Case(
        "flags-merge-bad-dtype",
        "merge {recipe} -o {tmp}/out --dtype int8",
        re.compile(r"error: evomerge merge: argument --dtype: invalid choice: 'int8' .*\(see evomerge merge --help\)"),
        absent=["{tmp}/out"],
    ),
    Case(
        "flags-export-which-unknown",
        "export {run} --which best2 -o {tmp}/o.yaml",
        "error: --which: expected best, pareto or a candidate id, got 'best2'",
        absent=["{tmp}/o.yaml"],
    ),
    Case(
        "flags-export-negative-id",
        "export {run} --which -3 -o {tmp}/o.yaml",
        "error: {log}: no candidate with id -3 (ok ids: 0..1)",
        absent=["{tmp}/o.yaml"],
    ),
    Case(
        "flags-eval-batch-size-zero",
        "eval {base} --config {cfg} --batch-size 0",
        "error: --batch-size must be >= 1, got 0",
    ),
    Case(
        "flags-toyworld-threads-zero",
        "toyworld --preset test --threads 0 --dir {tmp}/w",
        "error: --threads: expected a positive integer, got 0",
        absent=["{tmp}/w"],
    ),
    Case(
        "flags-run-time-limit-garbage",
        f"run {{cfg}} --run-dir {{tmp}}/new --time-limit {'soon'}",
        re.compile(r"error: .*time_limit.*'soon'.*"),
        absent=["{tmp}/new"],
    ),
    Case(
        "flags-status-missing-run-dir",
        "status {tmp}/nope",
        "error: run directory {tmp}/nope does not exist",
    ),
    Case(
        "flags-resume-not-a-run-dir",
        "resume {tmp}",
        "error: {tmp} is not an evomerge run directory (no config.yaml)",
    ),
    Case(
        "flags-report-compare-a-file",
        "report {run} --compare {notes_txt}",
        "error: {notes_txt} is a file, not a run directory",
        setup=a_file("notes.txt"),
        absent=["{run}/report"],
    ),
    Case(
        "flags-run-config-missing",
        "run {tmp}/nope.yaml --run-dir {tmp}/new",
        re.compile(r"error: .*{tmp}/nope\.yaml.*"),
        absent=["{tmp}/new"],
    ),
    Case(
        "flags-merge-recipe-missing",
        "merge {tmp}/nope.yaml -o {tmp}/out",
        re.compile(r"error: .*{tmp}/nope\.yaml.*"),
        absent=["{tmp}/out"],
    ),
    # ---- recipes -----------------------------------------------------------------------------
    Case(
        "recipe-unknown-method",
        "merge {recipe} -o {tmp}/out",
        re.compile(r"error: .*merge_method.*'tiez'.*"),
        setup=recipe_doc(lambda d, env: d.update(merge_method="tiez")),
        absent=["{tmp}/out"],
    ),
    Case(
        "recipe-missing-model",
        "merge {recipe} -o {tmp}/out",
        re.compile(r"error: .*{tmp}/models/gone.*"),
        setup=recipe_doc(lambda d, env: d["models"][0].update(model=str(env["tmp"] / "models" / "gone"))),
        absent=["{tmp}/out"],
    ),
    Case(
        "recipe-weight-not-a-number",
        "merge {recipe} -o {tmp}/out",
        re.compile(r"error: .*models\[0\]\.parameters\.weight.*"),
        setup=recipe_doc(lambda d, env: d["models"][0]["parameters"].update(weight="heavy")),
        absent=["{tmp}/out"],
    ),
    # ---- callables named in configs ----------------------------------------------------------
    Case(
        "callable-module-nowhere",
        "eval {base} --config {cfg}",
        "error: scorer.fn: cannot import module 'nomod_zz' (No module named 'nomod_zz'; "
        "no nomod_zz.py or nomod_zz/ in {tmp} or {cwd} either)",
        setup=scorer_fn("nomod_zz:score"),
    ),
    Case(
        "callable-module-fails-on-import",
        "eval {base} --config {cfg}",
        "error: scorer.fn: importing {tmp}/mymod.py failed (ZeroDivisionError: division by zero)",
        setup=scorer_fn("mymod:score", "x = 1 / 0\n"),
    ),
    Case(
        "callable-attribute-missing",
        "eval {base} --config {cfg}",
        "error: scorer.fn: module 'mymod' has no attribute 'scroe'",
        setup=scorer_fn("mymod:scroe", "def score(model, tokenizer, examples):\n    return [0.0] * len(examples)\n"),
    ),
]


def _pareto_with_a_user_file(env):
    """``{out}/`` holds the user's own ``candidate-<id>.yaml`` for the first Pareto member."""
    from evomerge.runs.store import RunStore
    from evomerge.runs.summary import pareto_records

    out = env["tmp"] / "front"
    out.mkdir()
    front = sorted(r["id"] for r in pareto_records(RunStore(env["run"]).read_log()))
    (out / f"candidate-{front[0]}.yaml").write_text("my notes, not a recipe\n")
    env.add("out", out)
    env.add("first", front[0])


def _nothing_left(folder):
    assert sorted(p.name for p in folder.iterdir()) == [], "a temporary was left behind"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_output_input(case, env):
    run_case(case, env)


def test_the_battery_is_large_and_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 80
