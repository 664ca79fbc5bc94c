"""Reconcile: bring the broker and the runs dir back in line.

For every run submitted to the queue (`queue/submitted`) and not stopped:

- lost (started, lock free, no exit): finalized as terminated, never re-run;
- cancelled before it started: finalized as terminated;
- executed, finalize pending longer than the threshold: finalize re-sent;
- queued longer than the threshold (since its last enqueue): re-sent.

Re-sends are bounded by what the broker is missing: for each queue, at
most (runs waiting for it - messages in it) runs are re-sent, the longest
waiting first. A healthy backlog is never flooded with duplicates, and a
broker restarted without persistence (empty queues) gets all of them.

Runs without `queue/submitted` (staged by `gage run --stage`, say) are
left alone. Every action takes the run lock and re-checks the run, and
every delivery is idempotent, so reconcile is safe anywhere, any number
of times, next to running workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

from celery import bootsteps
from celery.worker import WorkController

from gage_runs.runs_dir import list_runs
from gage_runs.types import Run

from .broker import prune_embedded
from .celery_app import EXEC_TASK, FINALIZE_TASK
from .enqueue import BrokerSession
from .errors import BrokerUnavailable
from .lock import is_locked, try_lock
from .queue_meta import (
    cancel_requested,
    queue_path,
    read_enqueued,
    read_exit,
    read_submitted,
    write_enqueued,
)
from .runner import finalize_phase, has_timestamp
from .settings import Settings

log = logging.getLogger(__name__)

# (task, queue) -> [(waiting since, epoch µs; run)]
Backlogs = dict[tuple[str, str], list[tuple[int, Run]]]


def reconcile(settings: Settings) -> list[str]:
    """One reconcile pass over the runs dir; what it did, one line each."""
    runs_dir = settings.require_runs_dir()
    done: list[str] = []
    backlogs: Backlogs = defaultdict(list)
    for run in list_runs(runs_dir):
        submitted = read_submitted(run)
        if submitted is None or has_timestamp(run, "stopped") or is_locked(run):
            continue
        if read_exit(run) is not None:
            since = _mtime_us(queue_path(run, "exit"))
            backlogs[(FINALIZE_TASK, settings.finalize_queue)].append((since, run))
        elif has_timestamp(run, "started") or cancel_requested(run):
            exit_code = finalize_phase(run, settings)
            if exit_code is not None:
                done.append(f"{_label(run)}: finalized as terminated (exit {exit_code})")
        elif has_timestamp(run, "staged"):
            queue = str(submitted.get("queue") or settings.queue)
            since = read_enqueued(run) or submitted.get("time") or 0
            backlogs[(EXEC_TASK, queue)].append((since, run))
    stale = _stale(backlogs, settings.reconcile_threshold)
    if stale:
        done.extend(_resend(settings, backlogs, stale))
    pruned = prune_embedded(settings)
    if pruned:
        log.info("pruned %d claimed embedded broker messages", pruned)
    return done


_SENT = {EXEC_TASK: "re-sent to queue ", FINALIZE_TASK: "sent finalize to queue "}


def _stale(backlogs: Backlogs, threshold: float) -> Backlogs:
    """Per (task, queue), the runs waiting longer than `threshold`, oldest first."""
    cutoff = time.time_ns() // 1000 - int(threshold * 1_000_000)
    stale = {
        key: sorted((entry for entry in waiting if entry[0] < cutoff), key=lambda e: e[0])
        for key, waiting in backlogs.items()
    }
    return {key: entries for key, entries in stale.items() if entries}


def _resend(settings: Settings, backlogs: Backlogs, stale: Backlogs) -> list[str]:
    """Re-send as many stale runs of each queue as its queue is missing messages."""
    done: list[str] = []
    try:
        with BrokerSession(settings) as session:
            for (task, queue), entries in stale.items():
                missing = len(backlogs[(task, queue)]) - session.queue_size(queue)
                for _, run in entries[: max(missing, 0)]:
                    if _resend_one(session, task, queue, run):
                        done.append(f"{_label(run)}: {_SENT[task]}{queue}")
    except BrokerUnavailable as e:
        log.warning("reconcile: %s", e)
        done.append(f"broker unavailable, nothing sent: {e}")
    return done


def _resend_one(session: BrokerSession, task: str, queue: str, run: Run) -> bool:
    with _locked(run) as locked:
        if not locked or has_timestamp(run, "stopped"):
            return False
        if task == FINALIZE_TASK:
            if read_exit(run) is None:
                return False
            session.send(task, run.id, queue)
            return True
        if has_timestamp(run, "started"):
            return False
        session.send(task, run.id, queue)
        write_enqueued(run)
        return True


@contextlib.contextmanager
def _locked(run: Run) -> Iterator[bool]:
    lock = try_lock(run)
    try:
        yield lock is not None
    finally:
        if lock is not None:
            lock.release()


def _mtime_us(path: str) -> int:
    try:
        return int(os.stat(path).st_mtime * 1_000_000)
    except FileNotFoundError:
        return 0


def _label(run: Run) -> str:
    return f"{run.id[:8]} ({run.name})"


class ReconcileStep(bootsteps.StartStopStep):
    """A worker bootstep: reconcile at start, then every interval, in a thread.

    It runs in the worker's main process after the pool has started, so
    pool children are never forked from a process in the middle of it.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: object, **kwargs: object):
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()

    def start(self, worker: WorkController) -> None:
        settings: Settings = worker.app.settings
        thread = threading.Thread(
            target=self._loop, args=(settings,), name="gage-reconcile", daemon=True
        )
        thread.start()

    def stop(self, worker: WorkController) -> None:
        self._stop.set()

    def _loop(self, settings: Settings) -> None:
        while not self._stop.is_set():
            try:
                for line in reconcile(settings):
                    log.info("reconcile: %s", line)
            except Exception:
                log.exception("reconcile failed")
            self._stop.wait(settings.reconcile_interval)
