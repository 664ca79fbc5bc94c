"""Run status as Gage derives it from meta files: the one derivation.

`gage_queue.states` builds the queue's states on `gage_status`, so a run
the queue does not own has exactly the status Gage gives it.
"""

from __future__ import annotations

import os

from .meta import meta_exit_code, run_meta_path
from .types import Run, RunStatus


def status_for_exit_code(exit_code: int) -> RunStatus:
    if exit_code == 0:
        return "completed"
    return "terminated" if exit_code < 0 else "error"


def gage_status(exit_code: int | None, *, proc_lock: bool, staged: bool,
                initialized: bool) -> RunStatus:
    """completed/error/terminated from proc/exit, then running from
    proc/lock, then staged, pending (initialized) or unknown."""
    if exit_code is not None:
        return status_for_exit_code(exit_code)
    if proc_lock:
        return "running"
    if staged:
        return "staged"
    return "pending" if initialized else "unknown"


def run_status(run: Run) -> RunStatus:
    """The run's status as Gage reads it from its meta dir."""
    def exists(*parts: str) -> bool:
        return os.path.exists(run_meta_path(run, *parts))

    exit_code = meta_exit_code(run)
    if exit_code is not None:
        return status_for_exit_code(exit_code)
    return gage_status(None, proc_lock=exists("proc", "lock"), staged=exists("staged"),
                       initialized=exists("initialized"))
