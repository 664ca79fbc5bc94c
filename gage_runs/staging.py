"""Staging an op from a project into a runs dir in one call.

This is what `gage-submit` and the scheduler do for each run, and what
`gage run --stage` does in Gage: make the run, write its meta, associate
the project, record user attributes, and stage it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from typing import Any

from .errors import OpDefError
from .fsmode import walk_once
from .lifecycle import stage_run
from .meta import init_run_meta, make_run
from .sidecars import associate_project, log_user_attrs
from .types import CmdArgs, OpCmd, OpDef, OpRef, Run


def op_cmd(opdef: OpDef, project_dir: str) -> OpCmd:
    """The run command of an op, with `$project_dir` replaced as Gage does."""
    args = opdef.get_exec().get_run()
    if not args:
        raise OpDefError(f"operation '{opdef.name}' has no exec command to run")
    if not isinstance(args, (str, list)) or (
        isinstance(args, list) and not all(isinstance(arg, str) for arg in args)
    ):
        raise OpDefError(f"operation '{opdef.name}': exec must be a string or list of strings")
    return OpCmd(_resolve_project_dir(args, project_dir), {})


def _resolve_project_dir(args: CmdArgs, project_dir: str) -> CmdArgs:
    if isinstance(args, str):
        return args.replace("$project_dir", project_dir)
    return [arg.replace("$project_dir", project_dir) for arg in args]


def system_attrs() -> dict[str, Any]:
    return {"platform": platform_name()}


def platform_name() -> str:
    """`platform.platform()`, as Gage records it, without its `uname -p` subprocess (and
    without importing `platform`) on Linux with glibc.

    `platform.platform()` runs `uname -p` for the processor (about 10 ms of a
    submit's time on a 2-core VM); GNU uname on Linux prints `unknown` or the
    machine there, and `platform()` leaves out both, so Linux builds the same
    string from `os.uname()` (a patched uname that prints a CPU model, as
    Gentoo's, would have added it).
    """
    libc = os.confstr("CS_GNU_LIBC_VERSION") if sys.platform == "linux" else None
    libc_parts = (libc or "").split(maxsplit=1)  # as platform.libc_ver() reads it first
    if len(libc_parts) != 2:
        import platform

        return platform.platform()
    uname = os.uname()
    parts = (uname.sysname, uname.release, uname.machine, "with", "".join(libc_parts))
    name = "-".join(part.strip() for part in parts if part)
    for char in ' /\\:;"()':
        name = name.replace(char, "_" if char == " " else "-")
    name = name.replace("unknown", "")
    while "--" in name:
        name = name.replace("--", "-")
    return name.rstrip("-")


def stage_op(
    project_dir: str,
    opdef: OpDef,
    opref: OpRef,
    config: dict[str, Any],
    runs_dir: str,
    *,
    label: str | None = None,
    user_attrs: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> Run:
    """Make, initialize and stage a run of `opdef` from `project_dir`.

    `run_id` is the new run's id if the caller chose it (a submitter that
    must be able to remove the run if it is interrupted part way).

    When a stage hook or the config fails (a GageRunsError) the run is left
    `pending` (initialized, not staged), as Gage leaves it, and the error
    propagates. When the file system fails (OSError: the disk is full, say)
    the partial run is removed, so nothing half-written is listed, and the
    OSError propagates.
    """
    cmd = op_cmd(opdef, project_dir)
    with walk_once():  # one walk to each of the run's dirs, not one per file written
        run = make_run(opref, runs_dir, run_id)
        try:
            init_run_meta(run, opdef, config, cmd, system_attrs())
            associate_project(run, project_dir)
            attrs = {**(user_attrs or {}), **({"label": label} if label else {})}
            log_user_attrs(run, attrs)
            stage_run(run, project_dir)
        except OSError:
            discard_run(run)  # nothing writes to the run after this
            raise
    return run


def discard_run(run: Run) -> None:
    """Remove a run that could not be written: unlisted at once, then deleted.

    The meta dir is first renamed to a name that is not a run's (`list_runs`
    takes `*.meta` only), so even if deleting fails part way, no partial run
    is listed.
    """
    hidden = f"{run.meta_dir}.discarded.{os.getpid()}"
    with contextlib.suppress(OSError):
        os.rename(run.meta_dir, hidden)
    for path in (hidden, run.meta_dir, run.run_dir, run.run_dir + ".user"):
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.remove(run.run_dir + ".project")
