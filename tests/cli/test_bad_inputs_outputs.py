"""The outputs battery: destructive ``--force``, tampered logs, OS errors, bad flags and callables.

Every case (the harness: ``tests/cli/battery.py``) runs one ``evomerge`` command in-process and
asserts its one ``error:`` line, exit status 2, no traceback, every protected tree byte-identical
afterwards (sha256 of every file, before and after) and no output left behind. Each one is an
input a user (or a tampered run directory) can really give; the ``--force`` cases name what
v1 destroyed: a folder of runs, the run directory, ``.``, ``$HOME``, a source model.
"""

from __future__ import annotations

import errno
import re

import pytest
from battery import Case, broken_folder, case_id, run_case
from output_setups import (
    a_file,
    all_failed,
    dataflow_best,
    dataflow_recipe_file,
    empty_log,
    empty_work_dir,
    fake_home,
    folder_of_runs,
    full,
    genome_outside,
    link_to,
    log_is,
    marker_is_a_link,
    merge_holding_a_run,
    merge_marked_as,
    meta_is_a_link,
    no_stray_old_folder,
    nothing_left,
    pareto_with_a_user_file,
    previous_merge,
    recipe_doc,
    ro,
    run_without_validation,
    scorer_fn,
    steps,
    tamper,
    temporaries_in,
    user_folder,
    with_run_inside,
    work_dir,
)

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
        after=lambda env: nothing_left(env["disk"]),  # no temporary left on the full disk
    )


# Commands on a run that lies in such a folder: (name, argv, what fails, what).
RUN_TARGETS = [
    ("report", "report {F}/run", "{F}/run/report", "writing the report"),
    ("resume", "resume {F}/run", "{F}/run/lock", "taking the run's lock"),
]


def _run_case(target, failure) -> Case:
    name, argv, out, what = target
    kind, folder, strerror, _ = failure
    fill = lambda t: t.replace("{F}", "{" + folder + "}")  # noqa: E731
    errs = {"rofs": errno.EROFS, "locked": errno.EACCES}
    return Case(
        f"os-{name}-on-a-run-in-a-{kind}",
        fill(argv),
        f"error: {fill(out)}: {strerror} (while {what})",
        setup=lambda env: broken_folder(env, folder, errs[folder], populate=with_run_inside(env, True)),
        protect=[fill("{F}/run")],
    )


OS_CASES = [
    *(_os_case(t, f) for f in OS_FAILURES for t in OS_TARGETS),
    *(_full_disk_case(t) for t in OS_TARGETS if t[0] in ("merge", "export-hf")),
    *(_run_case(t, f) for f in OS_FAILURES[:2] for t in RUN_TARGETS),
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
        after=no_stray_old_folder,
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
    Case(
        "merge-dataflow-force-onto-a-source-model",
        "merge {dfrecipe} -o {e1} --force",
        "error: {e1}: is the source model" + FORCE_SOURCE,
        setup=lambda env: dataflow_recipe_file(env),
        protect=[MODELS],
    ),
    # ---- toyworld --dir ---------------------------------------------------------------------
    Case(
        "toyworld-force-onto-a-run-dir",
        "toyworld --preset test --dir {run} --force",
        "error: {run}: exists and is not a toy world (no manifest.json); choose an empty or new directory",
        protect=RUN,
    ),
    Case(
        "toyworld-dir-is-the-current-dir",
        "toyworld --preset test --dir . --force",
        "error: {work}: is the current directory" + NEVER,
        setup=work_dir,
        cwd="{work}",
        protect=["{work}"],
    ),
    Case(
        "toyworld-dir-is-home",
        "toyworld --preset test --dir {fhome}",
        "error: {fhome}: is your home directory" + NEVER,
        setup=fake_home,
        protect=["{fhome}"],
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
        setup=lambda env: pareto_with_a_user_file(env),
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
        "os-run-config-yaml-is-a-directory",
        "run {cfg} --run-dir {tmp}/new",
        "error: {tmp}/new/config.yaml: Is a directory (while writing the run's config)",
        setup=steps(lambda env: env["cfg"], lambda env: (env["tmp"] / "new" / "config.yaml").mkdir(parents=True)),
        protect=["{tmp}/new/config.yaml"],
    ),
    # Used to say "already holds a run; continue it with `evomerge resume`", which then ran the user's config.
    Case(
        "run-dir-holds-a-users-config-yaml",
        "run {cfg} --run-dir {tmp}/mine",
        "error: {tmp}/mine/config.yaml: a config.yaml that is not a run's (no evaluations.jsonl, meta.json, lock, "
        "checkpoints/ or progress.json beside it) is there, and a run would replace it; pick another --run-dir",
        setup=steps(
            lambda env: env["cfg"],
            lambda env: (env["tmp"] / "mine").mkdir(),
            lambda env: (env["tmp"] / "mine" / "config.yaml").write_text("my: own config\n"),
        ),
        protect=["{tmp}/mine"],
    ),
    # The held-out scores are a cache: a run directory that cannot take them still shows them.
    Case(
        "os-status-validate-on-a-run-in-a-read-only-folder",
        "status {rofs}/run --validate",
        [
            "warning: {rofs}/run/validation.json: Read-only file system (while writing the held-out scores); "
            "not cached (computed again when asked)"
        ],
        code=0,
        setup=lambda env: broken_folder(env, "rofs", errno.EROFS, populate=run_without_validation(env)),
        protect=["{rofs}/run"],
    ),
    # `eval RECIPE` merges into a temporary folder: a full or read-only /tmp is one line too.
    Case(
        "os-eval-recipe-with-a-full-tmp",
        "eval {recipe} --config {cfg}",
        re.compile(
            r"error: {disk}/evomerge-eval-\w+/merged: No space left on device \(while writing the merged checkpoint\)"
        ),
        setup=steps(lambda env: env["cfg"], lambda env: env["recipe"], full("disk"), temporaries_in("disk")),
        after=lambda env: nothing_left(env["disk"]),
    ),
    Case(
        "os-eval-recipe-with-a-read-only-tmp",
        "eval {recipe} --config {cfg}",
        re.compile(r"error: {rofs}/evomerge-eval-\w+: Read-only file system \(while running evomerge eval\)"),
        setup=steps(lambda env: env["cfg"], lambda env: env["recipe"], ro("rofs"), temporaries_in("rofs")),
    ),
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
        "flags-export-id-beyond-int64",
        "export {run} --which 99999999999999999999999 -o {tmp}/o.yaml",
        "error: {log}: no candidate with id 99999999999999999999999 (ok ids: 0..1)",
        absent=["{tmp}/o.yaml"],
    ),
    # An empty -o is the current directory: never written over, whatever the format.
    Case(
        "flags-export-output-is-empty",
        lambda env: ["export", str(env["run"]), "-o", ""],
        "error: output . is a directory; this format writes one YAML file: give a file name",
        cwd="{tmp}",
        protect=["{tmp}"],
    ),
    Case(
        "flags-merge-output-is-empty",
        lambda env: ["merge", str(env["recipe"]), "-o", "", "--force"],
        "error: .: is the current directory" + NEVER,
        cwd="{tmp}",
        protect=["{tmp}"],
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


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_output_input(case, env):
    run_case(case, env)


def test_the_battery_is_large_and_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 80
