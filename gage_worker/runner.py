"""The two phases of a queued run, each under the run lock.

Idempotent by state: a phase whose run is locked, already started (exec)
or already stopped does nothing. A run found started, not stopped, with
its lock free and no recorded exit is *lost* (its worker died): it is
finalized as terminated, never run again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket

import psutil

from gage_runs.errors import GageRunsError, RunExecError
from gage_runs.lifecycle import exec_run, finalize_run
from gage_runs.meta import meta_timestamp, runner_log
from gage_runs.types import Run

from .lock import try_lock
from .queue_meta import cancel_requested, read_exit, read_heartbeat, read_submitted, write_exit
from .settings import Settings
from .supervisor import Supervisor, run_env

log = logging.getLogger(__name__)

LOST_EXIT = -9  # the worker died; the run was killed with it or is killed now
CANCEL_EXIT = -15  # cancelled before it started


def has_timestamp(run: Run, name: str) -> bool:
    return meta_timestamp(run, name) is not None


def exec_phase(run: Run, settings: Settings, *, gpu: str | None = None) -> bool:
    """Execute a staged run once; True if it ran and now needs finalize."""
    if has_timestamp(run, "stopped"):
        log.info("run %s: already stopped; nothing to do", run.id)
        return False
    if not _submitted(run):
        return False
    lock = try_lock(run)
    if lock is None:
        log.info("run %s: locked by another process; nothing to do", run.id)
        return False
    with lock:
        if has_timestamp(run, "stopped"):
            log.info("run %s: already stopped; nothing to do", run.id)
            return False
        if read_exit(run) is not None:
            log.info("run %s: already executed; finalize pending", run.id)
            return False
        if has_timestamp(run, "started"):
            _finalize_terminated(run, settings, LOST_EXIT, "its worker died")
            return False
        if not has_timestamp(run, "staged"):
            log.error("run %s: not staged; not running it", run.id)
            return False
        if cancel_requested(run):
            _finalize_terminated(run, settings, CANCEL_EXIT, "cancelled before it started")
            return False
        exit_code = _supervised_exec(run, settings, gpu)
        write_exit(run, exit_code)
        log.info("run %s: exited with %s", run.id, exit_code)
    return True


def finalize_phase(run: Run, settings: Settings) -> int | None:
    """Finalize an executed, lost or cancelled run; its exit code, or None.

    None means there was nothing to do: the run is locked, already
    stopped, or neither executed, started nor cancelled.
    """
    if has_timestamp(run, "stopped") or not _submitted(run):
        return None
    lock = try_lock(run)
    if lock is None:
        return None
    with lock:
        if has_timestamp(run, "stopped"):
            return None
        exit_code = read_exit(run)
        if exit_code is None:
            if has_timestamp(run, "started"):
                return _finalize_terminated(run, settings, LOST_EXIT, "its worker died")
            if cancel_requested(run):
                return _finalize_terminated(
                    run, settings, CANCEL_EXIT, "cancelled before it started"
                )
            log.info("run %s: not executed; nothing to finalize", run.id)
            return None
        _finalize(run, settings, exit_code)
        return exit_code


def _submitted(run: Run) -> bool:
    """Only runs submitted to the queue are the queue's to run or finalize.

    A run staged or started by Gage itself (`gage run`) has no
    `queue/submitted`; a message naming it is ignored, so it is never
    run here, nor taken for lost and killed.
    """
    if read_submitted(run) is not None:
        return True
    log.error("run %s: not submitted to the queue; ignoring it", run.id)
    return False


def _supervised_exec(run: Run, settings: Settings, gpu: str | None) -> int:
    submitted = read_submitted(run) or {}
    time_limit = submitted.get("time_limit")
    supervisor = Supervisor(
        run,
        time_limit=float(time_limit) if isinstance(time_limit, (int, float)) else None,
        grace=settings.cancel_grace,
    )
    log.info("run %s: starting%s", run.id, f" on GPU {gpu}" if gpu is not None else "")
    try:
        exec_run(run, base_env=run_env(settings.broker_url, gpu), watcher=supervisor)
    except RunExecError as e:
        return e.exit_code
    except (GageRunsError, OSError) as e:
        log.error("run %s: cannot execute: %s", run.id, e)
        with contextlib.suppress(OSError):
            runner_log(run, f"Error executing run: {e}")
        return 1
    return 0


def _finalize_terminated(run: Run, settings: Settings, exit_code: int, why: str) -> int:
    log.warning("run %s: %s; finalizing as terminated (exit %s)", run.id, why, exit_code)
    with contextlib.suppress(OSError):
        runner_log(run, f"Run {why}: finalizing as terminated")
    if exit_code == LOST_EXIT:
        kill_leftovers(run)
    _finalize(run, settings, exit_code)
    return exit_code


def _finalize(run: Run, settings: Settings, exit_code: int) -> None:
    try:
        finalize_run(run, exit_code, base_env=run_env(settings.broker_url))
    except (GageRunsError, OSError) as e:
        log.error("run %s: finalize failed: %s", run.id, e)


def kill_leftovers(run: Run) -> int:
    """Kill what remains of a lost run's process group on this host.

    The heartbeat names the host and group. A process is killed only if it
    is in that group and its environment carries this run's RUN_ID, so a
    reused pid is never hit. Returns the number of processes killed.
    """
    heartbeat = read_heartbeat(run) or {}
    pgid = heartbeat.get("pgid")
    if heartbeat.get("host") != socket.gethostname() or not isinstance(pgid, int):
        return 0
    killed = 0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.environ().get("RUN_ID") == run.id:
                proc.send_signal(signal.SIGKILL)
                killed += 1
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    if killed:
        log.warning("run %s: killed %d leftover process(es) of group %d", run.id, killed, pgid)
    return killed
