"""Reconcile: bring the broker and the runs dir back in line.

For every run submitted to the queue (`queue/submitted`) and not stopped:

- lost (started, lock free, no exit): finalized as terminated, never re-run;
- cancelled before it started: finalized as terminated;
- executed, finalize pending longer than the threshold: finalize re-sent;
- queued longer than the threshold (since its last enqueue): re-sent, but
  only when its queue holds fewer messages than it has queued runs, so a
  long, healthy backlog is not flooded with duplicates. A broker restarted
  without persistence has empty queues, so all of them are re-sent.

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


def reconcile(settings: Settings) -> list[str]:
    """One reconcile pass over the runs dir; what it did, one line each."""
    runs_dir = settings.require_runs_dir()
    now_us = time.time_ns() // 1000
    threshold_us = settings.reconcile_threshold * 1_000_000
    done: list[str] = []
    queued: dict[str, list[Run]] = defaultdict(list)
    stale: dict[str, list[Run]] = defaultdict(list)
    finalize: list[Run] = []
    for run in list_runs(runs_dir):
        submitted = read_submitted(run)
        if submitted is None or has_timestamp(run, "stopped") or is_locked(run):
            continue
        if read_exit(run) is not None:
            if now_us - _mtime_us(queue_path(run, "exit")) > threshold_us:
                finalize.append(run)
        elif has_timestamp(run, "started") or cancel_requested(run):
            exit_code = finalize_phase(run, settings)
            if exit_code is not None:
                done.append(f"{_label(run)}: finalized as terminated (exit {exit_code})")
        elif has_timestamp(run, "staged"):
            queue = str(submitted.get("queue") or settings.queue)
            queued[queue].append(run)
            last = read_enqueued(run) or submitted.get("time") or 0
            if now_us - last > threshold_us:
                stale[queue].append(run)
    if finalize or stale:
        done.extend(_send(settings, finalize, queued, stale))
    pruned = prune_embedded(settings)
    if pruned:
        log.info("pruned %d claimed embedded broker messages", pruned)
    return done


def _send(
    settings: Settings,
    finalize: list[Run],
    queued: dict[str, list[Run]],
    stale: dict[str, list[Run]],
) -> list[str]:
    done: list[str] = []
    try:
        with BrokerSession(settings) as session:
            for run in finalize:
                session.send(FINALIZE_TASK, run.id, settings.finalize_queue)
                done.append(f"{_label(run)}: sent finalize")
            for queue, runs in stale.items():
                waiting = session.queue_size(queue)
                if waiting >= len(queued[queue]):
                    continue
                for run in runs:
                    with _locked(run) as locked:
                        if locked and not has_timestamp(run, "started"):
                            session.send(EXEC_TASK, run.id, queue)
                            write_enqueued(run)
                            done.append(f"{_label(run)}: re-sent to queue {queue}")
    except BrokerUnavailable as e:
        log.warning("reconcile: %s", e)
        done.append(f"broker unavailable, nothing sent: {e}")
    return done


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
