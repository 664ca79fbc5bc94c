"""Finalize, and the ends of lost and cancelled queued runs: under the run lock.

Every decision here reads the run record through the locked descriptor
(`lock.RunLock.record`), never a cached file, and every change goes
through the transition table (`states.check_transition`).

Finalize is crash-safe: its steps can all be redone, each attempt is
counted in the record before it starts, and the run counts as finalized
only when the record says so, written after every step is done. An
attempt that fails, or dies, is retried by reconcile with backoff, at
most MAX_FINALIZE_ATTEMPTS times in all; then the run is
`finalize-failed` with the error, and nothing re-sends it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat

from gage_queue import active
from gage_queue.layout import host_alive_lock
from gage_queue.locks import LockFileMissing, RunLock, probe_path, try_lock
from gage_queue.queue_meta import read_cancel
from gage_queue.record import RunRecord
from gage_queue.settings import Settings
from gage_queue.snapshots import snapshot
from gage_queue.states import (
    KILLED_EXIT,
    NOT_STARTED,
    STOPPED_EXIT,
    EndReason,
    Event,
    RunState,
    before_start_words,
    cancelled_words,
    derive_state,
    ended_state,
    lost_words,
)
from gage_queue.waiting import remove_waiting
from gage_runs.errors import GageRunsError
from gage_runs.fsmode import walk_once, writable_file_mode
from gage_runs.lifecycle import finalize_run
from gage_runs.meta import make_run_timestamp, run_meta_path, runner_log
from gage_runs.types import Run
from gage_worker.retries import retry_if_due
from gage_worker.runenv import run_env

log = logging.getLogger(__name__)

MAX_FINALIZE_ATTEMPTS = 3


def finalize_phase(run: Run, settings: Settings) -> RunRecord | None:
    """Finalize an exited, lost or cancelled queued run; its record, or None.

    None means there was nothing to do: someone holds the lock, or the run
    is not the queue's, not ended, or already finalized.
    """
    lock = _lock(run)
    if lock is None:
        return None
    with lock, walk_once():
        record = lock.record()
        # We hold the lock, so nobody else does: a run committed running is lost.
        current = derive_state(snapshot(run, record, locked=False))
        if current is RunState.LOST:
            record = _recover_lost(lock, record, settings)
        elif current in NOT_STARTED and read_cancel(run) is not None:
            record = _cancel(lock, record)
        elif current is not RunState.FINALIZING:
            return None
        return _finalize(lock, record, settings)


def _lock(run: Run) -> RunLock | None:
    try:
        return try_lock(run)
    except LockFileMissing as e:
        log.info("run %s: %s; not touching it", run.id, e)
        return None


def _cancel(lock: RunLock, record: RunRecord) -> RunRecord:
    detail = before_start_words(cancelled_words((read_cancel(lock.run) or {}).get("by")))
    log.info("run %s: %s", lock.run.id, detail)
    return lock.advance(record, Event.CANCEL, RunState.FINALIZING, exit_code=STOPPED_EXIT,
                   reason=EndReason.CANCELLED, detail=detail, ended=make_run_timestamp())


def lost_reason(record: RunRecord, runs_dir: str) -> tuple[EndReason, str]:
    """Worker lost (its host lives: some keeper or worker there holds the host lock) or host lost."""
    host = record.host or "?"
    alive = host == socket.gethostname() or probe_path(host_alive_lock(runs_dir, host))
    reason = EndReason.WORKER_LOST if alive else EndReason.HOST_LOST
    return reason, lost_words(reason, host)


def _recover_lost(lock: RunLock, record: RunRecord, settings: Settings) -> RunRecord:
    reason, detail = lost_reason(record, settings.require_runs_dir())
    log.warning("run %s: lost (%s); finalizing as terminated", lock.run.id, detail)
    _runner_log(lock.run, f"Run lost: {detail}; finalizing as terminated")
    _remove_quietly(run_meta_path(lock.run, "proc", "lock"))
    return lock.advance(record, Event.RECOVER, RunState.FINALIZING, current=RunState.LOST,
                   exit_code=KILLED_EXIT,
                   reason=reason, detail=detail, ended=make_run_timestamp())


def _finalize(lock: RunLock, record: RunRecord, settings: Settings) -> RunRecord:
    run = lock.run
    attempts = record.finalize_attempts + 1
    record = lock_commit_attempt(lock, record, attempts)
    exit_code = KILLED_EXIT if record.exit_code is None else record.exit_code
    try:
        _writable_again(run)
        finalize_run(run, exit_code, base_env=run_env(settings.broker_url))
    except (GageRunsError, OSError) as e:
        error = f"{type(e).__name__}: {e}"
        if attempts >= MAX_FINALIZE_ATTEMPTS:
            log.error("run %s: finalize failed %d times, giving up: %s", run.id, attempts, error)
            return lock.advance(record, Event.GIVE_UP, RunState.FINALIZE_FAILED,
                           finalize_error=error)
        log.error("run %s: finalize attempt %d failed: %s", run.id, attempts, error)
        return lock.advance(record, Event.FINALIZE_ERROR, RunState.FINALIZING,
                       finalize_error=error)
    try:  # before the end is committed: a crash here redoes it, and finds the attempt made
        retry_if_due(run, record)
    except (GageRunsError, OSError) as e:
        log.error("run %s: cannot stage its next attempt: %s", run.id, e)
    log.info("run %s: finalized, %s (%s)", run.id, ended_state(exit_code).value, record.detail)
    record = lock.advance(record, Event.FINALIZE, ended_state(exit_code), finalize_error=None)
    try:  # only now: the queue owes it nothing; reconcile drops an entry left behind
        remove_waiting(run.runs_dir, run.id)  # ended before it started (cancelled)
        active.remove(run.runs_dir, run.id)
    except OSError as e:
        log.warning("run %s: cannot remove its active index entry: %s", run.id, e)
    return record


def lock_commit_attempt(lock: RunLock, record: RunRecord, attempts: int) -> RunRecord:
    """Count the attempt before it starts, so one that kills its worker counts too.

    Not flushed to stable storage: a worker's death keeps it all the same,
    and a count lost with its host costs one more attempt, no more.
    """
    record = record.but(finalize_attempts=attempts, finalize_tried=make_run_timestamp())
    lock.commit(record, durable=False)
    return record


def _writable_again(run: Run) -> None:
    """Undo the read-only modes a finalize that died half-way left, so it can be redone."""
    for parts in (("log", "files"), ("manifest",), ("log", "runner")):
        path = run_meta_path(run, *parts)
        try:
            if not os.stat(path).st_mode & stat.S_IWUSR:
                os.chmod(path, writable_file_mode())
        except FileNotFoundError:
            continue


def _runner_log(run: Run, message: str) -> None:
    try:
        runner_log(run, message)
    except OSError as e:
        log.warning("run %s: cannot write log/runner: %s", run.id, e)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
