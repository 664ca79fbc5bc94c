"""Gage's `depends` piece by piece, without a worker: which runs a selection takes, which
files are copied (and which never are), and what the keeper refuses.

Runs are real runs made by the lifecycle (`stage_run`, `finalize_run`); the
end to end pipeline with a worker is in test_depends.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gage_queue.depends import (
    DependsError,
    ResolvedDependency,
    read_depends,
    resolve_depends,
    write_depends,
)
from gage_queue.layout import DEPENDS, queue_file
from gage_runs.depends import copy_run_files, log_dependency_files, write_runs_summary
from gage_runs.files_log import iter_files_log
from gage_runs.lifecycle import finalize_run, stage_run
from gage_runs.meta import init_run_meta, make_run, run_meta_path
from gage_runs.sidecars import log_user_attrs
from gage_runs.types import OpCmd, OpDef, OpRef, Run
from gage_worker.keeper.integrity import TamperedRunError, check_run_files

FIT = OpDef("fit", {"exec": "python fit.py",
                    "depends": {"type": "run-files", "run-select": "prepare"}})
EVALUATE = OpDef("evaluate", {"exec": "python e.py",
                              "depends": {"type": "runs-summary", "runs-select": "fit"}})


def _run(runs_dir: Path, project: Path, op: str, *, ns: str = "proj", exit_code: int | None = 0,
         outputs: dict[str, str] | None = None, label: str | None = None) -> Run:
    """A run of `op`, staged from `project`; ended with `exit_code` (None: still staged)
    after writing `outputs` as its generated files."""
    run = make_run(OpRef(ns, op), str(runs_dir))
    init_run_meta(run, OpDef(op, {"exec": "true"}), {}, OpCmd(["true"], {}))
    if label:
        log_user_attrs(run, {"label": label})
    stage_run(run, str(project))
    for relpath, text in (outputs or {}).items():
        Path(run.run_dir, relpath).parent.mkdir(parents=True, exist_ok=True)
        Path(run.run_dir, relpath).write_text(text)
    if exit_code is not None:
        finalize_run(run, exit_code)
    return run


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "fit.py").write_text("print('fit')\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    return runs, project


def test_an_op_name_selects_the_newest_run_of_this_project_that_may_complete(dirs):
    runs, project = dirs
    done = _run(runs, project, "prepare")
    _run(runs, project, "prepare", exit_code=3)  # failed: passed over
    _run(runs, project, "prepare", ns="other-project")  # another project's op of that name
    depends = resolve_depends(FIT, OpRef("proj", "fit"), str(runs), None)
    (dep,) = depends.resolved
    assert (dep.type, dep.select, dep.runs) == ("run-files", "prepare", (done.id,))
    assert depends.after == ()  # it completed: nothing to wait for

    pending = _run(runs, project, "prepare", exit_code=None)  # staged, not ended: waited for
    depends = resolve_depends(FIT, OpRef("proj", "fit"), str(runs), None)
    assert depends.resolved[0].runs == depends.after == (pending.id,)
    assert depends.any_end == ()


def test_a_runs_summary_waits_for_its_runs_however_they_end(dirs):
    runs, project = dirs
    ended = [_run(runs, project, "fit"), _run(runs, project, "fit", exit_code=1)]
    running = _run(runs, project, "fit", exit_code=None)
    depends = resolve_depends(EVALUATE, OpRef("proj", "evaluate"), str(runs), None)
    assert depends.resolved[0].runs == (*(r.id for r in ended), running.id)  # oldest first
    assert depends.after == depends.any_end == (running.id,)


def test_label_and_gage_selectors(dirs):
    runs, project = dirs
    a = _run(runs, project, "prepare", label="v1")
    b = _run(runs, project, "prepare")
    by_label = OpDef("fit", {"exec": "x", "depends": [
        {"type": "run-files", "run-select": "label:v1"},
        {"type": "runs-summary", "runs-select": "1"},
        {"type": "runs-summary", "runs-select": b.id[:8], "summary-filename": "s/b.json"}]})
    resolved = resolve_depends(by_label, OpRef("proj", "fit"), str(runs), None).resolved
    assert [dep.runs for dep in resolved] == [(a.id,), (b.id,), (b.id,)]
    assert resolved[2].summary_filename == "s/b.json"


@pytest.mark.parametrize("depends, message", [
    ({"type": "run-files", "run-select": "prepare"}, "no run of prepare completed or is still"),
    ({"type": "run-files", "run-select": "label:none"}, "selects no run"),
    ({"type": "runs-summary", "runs-select": "fit", "summary-filename": "../x.json"},
     "must be a relative path"),
    ({"type": "project-files", "files": "data/*.csv"}, "none found in"),
])
def test_a_dependency_that_selects_nothing_or_escapes_is_bad_input(dirs, depends, message):
    runs, project = dirs
    _run(runs, project, "fit")
    _run(runs, project, "prepare", exit_code=3)  # the only prepare failed
    with pytest.raises(DependsError, match=message):
        resolve_depends(OpDef("op", {"exec": "x", "depends": depends}), OpRef("proj", "op"),
                        str(runs), str(project))


def test_run_files_copies_what_it_generated_never_through_a_link_nor_over_its_own(dirs):
    runs, project = dirs
    (project / "fit.py").write_text("print('mine')\n")
    source = _run(runs, project, "prepare", outputs={"data/a.csv": "a\n", "fit.py": "theirs\n"})
    os.symlink("/etc/hostname", os.path.join(source.run_dir, "data", "link.csv"))
    os.symlink("/etc", os.path.join(source.run_dir, "etc"))
    target = _run(runs, project, "fit", exit_code=None)

    assert copy_run_files(target, source, ["**/*"]) == ["data/a.csv"]
    log_dependency_files(target)
    assert Path(target.run_dir, "fit.py").read_text() == "print('mine')\n"  # its own
    assert not os.path.lexists(Path(target.run_dir, "data", "link.csv"))
    assert not os.path.lexists(Path(target.run_dir, "etc"))
    logged = {(e.event, e.type, e.path) for e in iter_files_log(target)}
    assert ("a", "d", "data/a.csv") in logged
    manifest = Path(run_meta_path(target, "manifest")).read_text()
    assert "\nd " in manifest and manifest.rstrip().endswith(" data/a.csv")
    runner = Path(run_meta_path(target, "log", "runner")).read_text()
    assert "Dependency file fit.py not copied: the run has its own" in runner

    other = _run(runs, project, "fit", exit_code=None)
    assert copy_run_files(other, source, []) == ["data/a.csv"]  # default: its generated files


def test_a_summary_file_stays_in_the_run_dir(dirs):
    runs, project = dirs
    run = _run(runs, project, "evaluate", exit_code=None)
    write_runs_summary(run, "out/summary.json", [{"id": "x"}])
    assert json.loads(Path(run.run_dir, "out", "summary.json").read_text()) == {
        "runs": [{"id": "x"}]}
    for bad in ("../escape.json", "/tmp/abs.json", "a//b.json"):
        with pytest.raises(ValueError):
            write_runs_summary(run, bad, [])


def test_the_recorded_selection_is_the_submitters_and_read_only(dirs):
    runs, project = dirs
    run = _run(runs, project, "fit", exit_code=None)
    dep = ResolvedDependency("run-files", "prepare", (run.id,), ("*.csv",))
    write_depends(run, (dep,))
    path = queue_file(run, DEPENDS)
    assert os.stat(path).st_mode & 0o777 == 0o444
    assert read_depends(run) == (dep,)
    check_run_files(run, str(runs))  # as written: fine

    os.chmod(path, 0o666)  # now anyone could say which runs' files it gets
    with pytest.raises(TamperedRunError, match="depends.json is writable by others"):
        check_run_files(run, str(runs))
    Path(path).write_text('[{"type": "run-files", "runs": ["../../etc"], "files": []}]')
    with pytest.raises(ValueError, match="unreadable depends.json"):
        read_depends(run)
