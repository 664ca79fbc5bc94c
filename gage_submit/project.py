"""The project a command runs in: its dir, Gage file, op, and runs dir, found as Gage finds them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from gage_runs.errors import GageFileError, RunsDirError
from gage_runs.gagefile import (
    GageFile,
    find_project_dir,
    load_project_op,
    project_namespace,
    resolve_runs_dir,
    runs_dir_source,
)
from gage_runs.runs_dir import check_runs_dir
from gage_runs.types import OpDef, OpRef


@dataclass(frozen=True)
class OpContext:
    """An op loaded from its project: what staging a run of it needs."""

    project_dir: str
    gagefile: GageFile
    opdef: OpDef
    opref: OpRef


def project_dir_for(start: str | None) -> str:
    """The nearest project dir from `start` (default: the cwd) up, else `start` itself."""
    start = _start_dir(start)
    return find_project_dir(start) or start


def _start_dir(start: str | None) -> str:
    path = os.path.abspath(start or os.curdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise GageFileError(f"project dir {path} is not a directory")
    if not os.path.isdir(path):
        raise GageFileError(f"project dir {path} does not exist")
    return path


def load_op(op_name: str | None, start: str | None = None) -> OpContext:
    """Load the project's Gage file and the op (the default op if `op_name` is None)."""
    project_dir = project_dir_for(start)
    gagefile, opdef, opref = load_project_op(project_dir, op_name)
    return OpContext(project_dir, gagefile, opdef, opref)


def runs_dir_for_submit(context: OpContext, override: str | None) -> str:
    """The runs dir to stage into, resolved as Gage does with `override` first.

    A runs dir inside the project (`.gage/runs`, a relative `$runs-dir`)
    may be missing: it is created when the first run is staged, as Gage
    does. One outside must exist: a missing shared runs dir usually means
    the share is not mounted, and runs staged locally would never reach a
    worker.
    """
    runs_dir = resolve_runs_dir(context.project_dir, context.gagefile, override)
    if not os.path.exists(runs_dir) and _is_within(runs_dir, context.project_dir):
        return runs_dir
    try:
        return check_runs_dir(runs_dir)
    except RunsDirError as e:
        raise RunsDirError(f"{e} (from --runs-dir, GAGE_RUNS, RUNS_DIR or $runs-dir)") from None


def runs_dir_for_reading(start: str | None, override: str | None) -> str:
    """The runs dir that listing and lookup commands read (it need not exist).

    A missing or broken Gage file doesn't matter here: Gage then uses the
    project's default runs dir.
    """
    runs_dir = runs_dir_source(_start_dir(start), override).path
    if os.path.exists(runs_dir) and not os.path.isdir(runs_dir):
        raise RunsDirError(f"runs dir {runs_dir} is not a directory")
    return runs_dir


def current_namespace(start: str | None) -> str | None:
    """The op namespace of the project at `start`, if there is a project."""
    project_dir = find_project_dir(_start_dir(start))
    return project_namespace(project_dir) if project_dir else None


def _is_within(path: str, parent: str) -> bool:
    parent = os.path.realpath(parent)
    return os.path.commonpath([parent, os.path.realpath(path)]) == parent
