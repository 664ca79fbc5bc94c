"""Reconcile: bring the broker and the runs dir back in line.

For every run submitted to the queue, by its state (`state.queue_state`):

- lost (committed running, lock free: nothing of it is alive): finalized
  as terminated, worker lost or host lost, never re-run;
- running, but its keeper on this host is gone while processes of the run
  still hold the lock: those processes are killed (the same-host sweep),
  so the next pass finds the run lost;
- queued with a cancel request and a free lock: finalized as terminated;
- finalizing (exit recorded) for longer than a short grace (its worker
  died: a live one finalizes at once), or since the last failed attempt
  for longer than the threshold times 2^(attempts-1): finalize sent;
- queued without a waiting entry (a crash between the submit's steps, an
  older version): the entry is added, and the scheduler places the run
  (`scheduler`; a queued run needs no message: placement passes read the
  waiting index, and redo placements whose message was lost).

Finalize sends are bounded by what the broker is missing: at most (runs
owed a finalize - messages in the finalize queue), the longest waiting
first. A healthy backlog is never flooded with duplicates, and a broker
restarted without persistence (empty queues) gets all of them.
`finalize-failed` runs are never re-sent.

Reconcile reads the active index (`active`), not the runs dir: its cost
grows with the active runs only. It drops the entries of runs the queue
no longer owes anything (ended, deleted, taken by `gage run --start`).
A full pass (`full=True`) first scans the whole runs dir and adds the
entries that are missing (`repair_index`); workers do one at start-up
when they are the first worker, and then at most hourly. One worker at a
time does the periodic pass (`reconcile_if_due`, the lease in `lease`);
`gage-worker reconcile` by hand always does a full pass, holding the
lease if it is free so workers skip theirs meanwhile, never waiting for
it (a concurrent pass is safe: see below).

Runs without `queue/submitted` (staged by `gage run --stage`, say) are
left alone, and so are queued runs that `gage run --start` took. Every
action takes the run lock and re-checks the record through it, and every
delivery is idempotent, so reconcile is safe anywhere, any number of
times, next to running workers.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import defaultdict

from celery import bootsteps
from celery.worker import WorkController

from gage_queue import active
from gage_queue.broker.config import prune_embedded
from gage_queue.broker.messages import FINALIZE_TASK
from gage_queue.broker.send import BrokerSession
from gage_queue.consumers import announce_queues
from gage_queue.errors import BrokerUnavailable
from gage_queue.layout import SUBMITTED, queue_file_in
from gage_queue.locks import LockFileMissing, hold_host_alive, try_lock
from gage_queue.queue_meta import read_submitted
from gage_queue.record import RunRecord
from gage_queue.settings import Settings
from gage_queue.snapshots import QueueState, queue_state
from gage_queue.states import ENDED, NOT_STARTED, WAITING_TO_START, RunState
from gage_queue.waiting import add_waiting, read_waiting_entry, waiting_from
from gage_runs.errors import GageRunsError, RunLookupError
from gage_runs.names import is_run_id
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run
from gage_worker.cancels import sweep_cancels
from gage_worker.finalize import finalize_phase
from gage_worker.keeper.procs import is_alive
from gage_worker.lease import hold_workers_lock, try_lease

log = logging.getLogger(__name__)

# (task, queue) -> [(waiting since, epoch µs; run)]
Backlogs = dict[tuple[str, str], list[tuple[int, Run]]]


FULL_SCAN_INTERVAL = 3600.0  # seconds between full scans of the runs dir
FIRST_FINALIZE_GRACE = 10.0  # seconds after a run's exit before reconcile sends its finalize
CANCEL_SWEEP_INTERVAL = 1.0  # seconds between cancel sweeps, in every worker
NEW_ENTRY_GRACE = 600.0  # an entry this young without a record may be a submit in progress


def reconcile(settings: Settings, *, full: bool = False) -> list[str]:
    """One reconcile pass over the active runs (all runs if `full`); what it did, a line each.

    An error with one run is logged and the pass goes on.
    """
    runs_dir = settings.require_runs_dir()
    done: list[str] = []
    if full:
        added = repair_index(runs_dir)
        if added:
            done.append(f"{added} active run(s) missing from the index: added")
    backlogs: Backlogs = defaultdict(list)
    for run_id in active.newest_first(runs_dir):  # as the runs dir lists them
        try:
            _reconcile_entry(runs_dir, run_id, settings, backlogs, done)
        except Exception as e:  # one bad run never stops the pass
            expected = isinstance(e, (OSError, ValueError, GageRunsError))
            log.warning("reconcile: run %s: %s", run_id, e, exc_info=not expected)
    stale = _stale(backlogs, settings.reconcile_threshold)
    if stale:
        done.extend(_resend(settings, backlogs, stale))
    pruned = prune_embedded(settings)
    if pruned:
        log.info("put back %d embedded broker messages claimed by dead workers", pruned)
    return done


def reconcile_if_due(settings: Settings, *, first: bool = False) -> list[str] | None:
    """A pass if this worker gets the lease and nobody did one within the interval.

    It is a full pass if `first` (the first worker, at start) or if the
    last full pass is older than FULL_SCAN_INTERVAL. None if skipped.
    """
    lease = try_lease(settings.require_runs_dir())
    if lease is None:
        return None
    with lease:
        stamp = lease.stamp()
        now = time.time()
        full = first or now - stamp.last_full >= FULL_SCAN_INTERVAL
        if not full and now - stamp.last_pass < settings.reconcile_interval * 0.9:
            return None
        done = reconcile(settings, full=full)
        lease.record(full=full)
        return done


def reconcile_by_hand(settings: Settings) -> list[str]:
    """`gage-worker reconcile`: a full pass now, holding the lease if it is free."""
    lease = try_lease(settings.require_runs_dir())
    try:
        done = reconcile(settings, full=True)
        if lease is not None:
            lease.record(full=True)
        return done
    finally:
        if lease is not None:
            lease.release()


def repair_index(runs_dir: str) -> int:
    """Scan every run of the runs dir and index the active ones the index lacks; how many.

    One `stat` per run (`queue/submitted`); only runs submitted to the
    queue are read further. Entries of runs that are not active are
    dropped by the pass that follows.
    """
    indexed = set(active.active_ids(runs_dir))
    added = 0
    try:
        names = os.listdir(runs_dir)
    except FileNotFoundError:
        return added
    for name in names:
        run_id = name[: -len(".meta")]
        if not name.endswith(".meta") or run_id in indexed or not is_run_id(run_id):
            continue
        if not os.path.exists(queue_file_in(runs_dir, run_id, SUBMITTED)):
            continue
        try:
            run = resolve_run_id(runs_dir, run_id)
            state = queue_state(run)
            if is_owed(state):
                active.add(run)
                log.warning("reconcile: run %s: %s but not in the active index; added",
                            run_id, state.state)
                added += 1
        except Exception as e:  # one bad run never stops the scan
            expected = isinstance(e, (OSError, ValueError, GageRunsError))
            log.warning("reconcile: run %s: %s", run_id, e, exc_info=not expected)
    return added


def is_owed(state: QueueState) -> bool:
    """The queue still owes the run something: it belongs in the active index."""
    record = state.record
    if record is None:
        return False  # not the queue's (or no readable record)
    if record.state in NOT_STARTED:  # unless `gage run --start` took it
        return state.state in WAITING_TO_START
    return state.state not in ENDED


def _reconcile_entry(runs_dir: str, run_id: str, settings: Settings, backlogs: Backlogs,
                     done: list[str]) -> None:
    """Reconcile an indexed run, or drop its entry if the queue owes it nothing."""
    try:
        run = resolve_run_id(runs_dir, run_id)
    except RunLookupError:
        if os.path.lexists(os.path.join(runs_dir, run_id + ".meta")):
            raise
        active.remove(runs_dir, run_id)
        log.info("reconcile: run %s: deleted, dropped from the active index", run_id)
        return
    state = queue_state(run)
    if not is_owed(state):
        young = active.entry_age(runs_dir, run_id, time.time()) < NEW_ENTRY_GRACE
        if state.record is None and young:
            return  # being submitted: its record is not written yet
        active.remove(runs_dir, run_id)
        log.info("reconcile: run %s: %s, dropped from the active index", run_id, state.state)
        return
    _reconcile_run(run, read_submitted(run) or {}, state, settings, backlogs, done)


def _reconcile_run(run: Run, submitted: dict, state: QueueState, settings: Settings,
                   backlogs: Backlogs, done: list[str]) -> None:
    record = state.record or RunRecord()
    if state.state is RunState.LOST or (
        state.state in NOT_STARTED and state.cancel_by is not None  # read with the state
    ):
        finalized = finalize_phase(run, settings)
        if finalized is not None:
            done.append(f"{run.brief}: {finalized.state.value} ({finalized.detail})")
    elif state.state is RunState.RUNNING:
        killed = sweep_orphans(run, record)
        if killed:
            done.append(f"{run.brief}: killed {killed} process(es) its dead keeper left")
    elif state.state is RunState.FINALIZING:
        if _finalize_due(record, settings.reconcile_threshold):  # due: stale from the start
            backlogs[(FINALIZE_TASK, settings.finalize_queue)].append((0, run))
    elif state.state in NOT_STARTED and read_waiting_entry(run.runs_dir, run.id) is None:
        add_waiting(run.runs_dir, waiting_from(run.id, {"queue": settings.queue, **submitted}))
        done.append(f"{run.brief}: queued but not in the waiting index; added")


def _finalize_due(record: RunRecord, threshold: float) -> bool:
    """Finalize is owed and nobody is about to do it.

    A first attempt is due `FIRST_FINALIZE_GRACE` seconds after the exit:
    a live worker finalizes its run right after its keeper answers, so an
    exit older than that lost its worker, and its finalize has nothing to
    wait for. A failed attempt is retried after the threshold times
    2^(attempts-1).
    """
    since = record.finalize_tried or record.ended or 0
    if record.finalize_attempts == 0:
        wait = FIRST_FINALIZE_GRACE
    else:
        wait = threshold * 2 ** (record.finalize_attempts - 1)
    return time.time_ns() // 1000 - since > wait * 1_000_000


def sweep_orphans(run: Run, record: RunRecord) -> int:
    """Kill what a dead keeper on this host left of its run; how many were killed.

    Only on the keeper's own host, only when that keeper is gone (pid and
    start time), and only processes whose environment names this run.
    """
    if record.host != socket.gethostname() or is_alive(record.keeper_pid, record.keeper_started):
        return 0
    import psutil

    killed = 0
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            if env.get("RUN_ID") == run.id and env.get("RUN_DIR") == run.run_dir:
                proc.send_signal(signal.SIGKILL)
                killed += 1
        except psutil.Error:
            continue
    if killed:
        log.warning("run %s: killed %d process(es) left by its dead keeper", run.id, killed)
    return killed


_SENT = {FINALIZE_TASK: "sent finalize to queue "}


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
                        done.append(f"{run.brief}: {_SENT[task]}{queue}")
    except BrokerUnavailable as e:
        log.warning("reconcile: %s", e)
        done.append(f"broker unavailable, nothing sent: {e}")
    return done


def _resend_one(session: BrokerSession, task: str, queue: str, run: Run) -> bool:
    """Send finalize for `run` if its record, read under the lock, still wants it."""
    try:
        lock = try_lock(run)
    except LockFileMissing:
        return False
    if lock is None:
        return False
    with lock:
        if lock.record().state is not RunState.FINALIZING:
            return False
        session.send(task, run.id, queue)
        return True


class ReconcileStep(bootsteps.StartStopStep):
    """A worker bootstep: reconcile when due (`reconcile_if_due`), checked every interval.

    The first worker (no other holds the workers lock) does a full pass at
    start. It runs in a thread of the worker's main process after the pool
    has started, so pool children are never forked from a process in the
    middle of it.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: object, **kwargs: object):
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()

    def start(self, worker: WorkController) -> None:
        settings: Settings = worker.app.settings
        self._hold_host_lock(settings)
        self._announce_queues(worker, settings)
        first = self._hold_workers_lock(settings)
        thread = threading.Thread(
            target=self._loop, args=(settings, first), name="gage-reconcile", daemon=True
        )
        thread.start()
        threading.Thread(target=self._cancel_loop, args=(settings,), name="gage-cancels",
                         daemon=True).start()

    def stop(self, worker: WorkController) -> None:
        self._stop.set()

    def _announce_queues(self, worker: WorkController, settings: Settings) -> None:
        """Tell the runs dir which queues this worker consumes (`presence`)."""
        queues = worker.app.amqp.queues
        names = sorted(queues.consume_from or queues)
        try:
            self._queue_fds = announce_queues(settings.require_runs_dir(), names)
        except OSError as e:
            log.warning("cannot announce the queues this worker consumes: %s", e)

    def _hold_host_lock(self, settings: Settings) -> None:
        """Share this host's alive lock while the worker lives (see finalize.lost_reason)."""
        try:
            self._host_fd = hold_host_alive(settings.require_runs_dir(), socket.gethostname())
        except OSError as e:
            log.warning("cannot hold this host's alive lock: %s", e)

    def _hold_workers_lock(self, settings: Settings) -> bool:
        """Share the workers lock; True if this is the first worker (or it cannot tell)."""
        try:
            self._workers_fd, first = hold_workers_lock(settings.require_runs_dir())
        except OSError as e:
            log.warning("cannot hold the workers lock: %s", e)
            return True
        return first

    def _loop(self, settings: Settings, first: bool) -> None:
        while not self._stop.is_set():
            try:
                done = reconcile_if_due(settings, first=first)
                if done is not None:
                    first = False
                    for line in done:
                        log.info("reconcile: %s", line)
            except Exception:
                log.exception("reconcile failed")
            self._stop.wait(settings.reconcile_interval)

    def _cancel_loop(self, settings: Settings) -> None:
        """End cancelled runs that have not started (`cancels.sweep_cancels`)."""
        while not self._stop.wait(CANCEL_SWEEP_INTERVAL):
            try:
                ended = sweep_cancels(settings)
                if ended:
                    log.info("cancel sweep: %d cancelled run(s) ended before they started", ended)
            except Exception:
                log.exception("cancel sweep failed")
