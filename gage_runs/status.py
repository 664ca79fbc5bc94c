"""Run status as Gage derives it from meta files."""

from __future__ import annotations

import os

from .meta import meta_exit_code, run_meta_path
from .types import Run, RunStatus


def status_for_exit_code(exit_code: int) -> RunStatus:
    if exit_code == 0:
        return "completed"
    return "terminated" if exit_code < 0 else "error"


def run_status(run: Run) -> RunStatus:
    """completed/error/terminated from proc/exit, then running from
    proc/lock, then staged, pending (initialized) or unknown."""
    exit_code = meta_exit_code(run)
    if exit_code is not None:
        return status_for_exit_code(exit_code)
    if os.path.exists(run_meta_path(run, "proc", "lock")):
        return "running"
    if os.path.exists(run_meta_path(run, "staged")):
        return "staged"
    if os.path.exists(run_meta_path(run, "initialized")):
        return "pending"
    return "unknown"
