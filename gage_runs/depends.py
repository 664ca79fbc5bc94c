"""The files of Gage's `depends`, put in a run's dir (Gage 0.1.2 declares them, never resolves).

- `project-files`: at staging, the project files the `files` patterns
  select (Gage's pattern syntax, `file_select`) are copied into the run
  dir, before the `stage-dependencies` hook, and logged as `d` entries.
  `link: true` is taken as a copy: a run must not depend on its project,
  whose files a worker host may not see.
- `run-files`: another run's files, copied into this run's dir at the
  same relative paths: those the `files` patterns select among all of
  its files, or, with no patterns, the files it generated (`g` in its
  files log). Only regular files inside that run's dir are copied (no
  link is followed out of it), and a path this run already has (its own
  source code, say) is kept and the skip logged in `log/runner`.
- `runs-summary`: a JSON file describing the selected runs
  (`write_runs_summary`; the queue says what each row holds).

Which runs are selected is the queue's business (the submit resolves the
selection; the keeper copies once they ended): this module only moves
files and logs them.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from .file_select import select_files
from .files_log import DEPENDENCY, GENERATED, apply_to_files_log, reduce_files_log, write_manifest
from .fsmode import write_text
from .meta import meta_opdef, runner_log
from .sourcecode import copy_files
from .types import Run

PROJECT_FILES, RUN_FILES, RUNS_SUMMARY = "project-files", "run-files", "runs-summary"
DEFAULT_SUMMARY_FILENAME = "runs-summary.json"


def copy_project_files(run: Run, project_dir: str) -> None:
    """Copy the files of each `project-files` dependency of the run's op (at staging)."""
    for dep in meta_opdef(run).get_dependencies():
        if dep.get_type() != PROJECT_FILES or not dep.get_files():
            continue
        patterns = dep.get_files()
        runner_log(run, f"Copying project files (see log/files): {patterns}")
        paths = select_files(project_dir, patterns, exclude_dirs=[run.runs_dir, run.run_dir])
        copy_files(project_dir, run.run_dir, _new_paths(run, paths))


def copy_run_files(run: Run, source: Run, patterns: list[str]) -> list[str]:
    """Copy `source`'s files (selected by `patterns`, else those it generated) into the run
    dir; the relative paths copied. Call `log_dependency_files` after the last copy."""
    if patterns:
        paths = select_files(source.run_dir, patterns, followlinks=False)
    else:
        paths = sorted(path for type, path in reduce_files_log(source) if type == GENERATED)
    inside = [path for path in paths if _regular_inside(source.run_dir, path)]
    copied = _new_paths(run, inside)
    runner_log(run, f"Copying files of run {source.id} (see log/files): {len(copied)} files")
    copy_files(source.run_dir, run.run_dir, copied)
    return copied


def write_runs_summary(run: Run, filename: str, rows: list[dict[str, Any]]) -> None:
    """Write the runs summary file (`{"runs": rows}`) into the run dir."""
    if not is_relative_inside(filename):
        raise ValueError(f"summary-filename {filename!r} is not a relative path in the run dir")
    runner_log(run, f"Writing runs summary {filename}: {len(rows)} runs")
    write_text(os.path.join(run.run_dir, filename), json.dumps({"runs": rows}, indent=2, sort_keys=True) + "\n",
               readonly=False)


def log_dependency_files(run: Run) -> None:
    """Log the files put in the run dir as `d` entries and rewrite the staged manifest."""
    apply_to_files_log(run, DEPENDENCY)
    write_manifest(run, finalizing=False)


def _new_paths(run: Run, paths: list[str]) -> list[str]:
    """The paths the run does not have yet; a skipped one is logged."""
    new = []
    for path in paths:
        if os.path.lexists(os.path.join(run.run_dir, path)):
            runner_log(run, f"Dependency file {path} not copied: the run has its own")
        else:
            new.append(path)
    return new


def _regular_inside(root: str, relpath: str) -> bool:
    """A regular file reached from `root` without following any link."""
    path = root
    for part in relpath.split("/"):
        path = os.path.join(path, part)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return False
    return stat.S_ISREG(mode)


def is_relative_inside(filename: str) -> bool:
    """A relative path that stays inside the dir it is taken from (no `..`, no empty part)."""
    parts = filename.replace(os.sep, "/").split("/")
    return bool(filename) and not os.path.isabs(filename) and ".." not in parts \
        and all(parts)
