"""The placement pass: waiting runs to the nodes where their slot and GPUs are free.

One pass at a time, under `.gage-queue/scheduler.lock` (any worker of any
host may hold it; whoever holds it does the pass and lets go). A pass:

1. reads the waiting index (releasing or ending the runs whose
   dependencies ended: `dependencies.settle`), the placements not yet started, the live
   nodes and who holds their slots and GPUs (`gage_queue.pool`);
2. drops placements that went stale (their node died, or their message
   was lost: older than `GAGE_PLACEMENT_TIMEOUT` and still not started), under the
   run lock, so their runs are placed again;
3. plans (`gage_queue.placement.plan`) and, for each assignment, takes
   the run lock, checks the record still says queued, writes the placement
   (`placed/<id>`, then the record through the lock: event `place`) and
   sends the run's exec task to the node's own queue
   (`layout.node_queue`), which only that worker consumes.

The keeper that receives it starts the run only if the record names its
node, and only with exactly those GPUs, taking their locks without
waiting; if any is taken after all (a stale view), it gives the placement
back and the next pass places the run again. So a GPU is never held by
two runs: the locks decide, the plan only proposes.

Passes run when a submit's message reaches any worker (for runs no pass
has seen yet), when a run's keeper ends on any worker (its resources are
free), and about once a second in every worker (`SCHEDULE_INTERVAL`,
skipped if a pass ran within it). The pass time is kept in the lock file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

from gage_queue.broker.messages import EXEC_TASK
from gage_queue.broker.send import BrokerSession
from gage_queue.errors import BrokerUnavailable
from gage_queue.layout import node_queue, scheduler_lock
from gage_queue.locks import RunLock, lock_fd, open_lock_file
from gage_queue.placement import Assignment, plan
from gage_queue.pool import PoolState, read_pool
from gage_queue.queue_meta import read_cancel, write_cancel
from gage_queue.settings import Settings
from gage_queue.states import Event, RunState
from gage_queue.waiting import (
    Gone,
    Placement,
    Waiting,
    commit_placement,
    lock_waiting,
    read_placements,
    read_waiting_entry,
    remove_placement,
    remove_waiting,
    waiting_to_plan,
)
from gage_runs.errors import RunLookupError
from gage_runs.meta import make_run_timestamp, run_meta_path
from gage_runs.runs_dir import resolve_run_id
from gage_worker.dependencies import settle

log = logging.getLogger(__name__)

SCHEDULE_INTERVAL = 1.0  # seconds between the passes every worker makes unasked
LOCK_WAIT = 2.0  # seconds a pass waits for another to end
STAMP_LIMIT = 4096


@dataclass(frozen=True)
class PassResult:
    placed: list[Assignment]
    dropped: int  # stale placements given back


def schedule(settings: Settings, *, unless_since: float | None = None) -> PassResult | None:
    """One pass, waiting up to LOCK_WAIT for the lock; None if skipped.

    `unless_since` (epoch s): skip if a pass started after that time (it saw
    what the caller wants seen).
    """
    runs_dir = settings.require_runs_dir()
    fd = _take_lock(runs_dir)
    if fd is None:
        log.warning("placement pass skipped: another pass holds the lock for %g s", LOCK_WAIT)
        return None
    try:
        if unless_since is not None and _last_pass(fd) > unless_since:
            return None
        _stamp(fd, time.time())
        return _pass(settings, runs_dir)
    finally:
        os.close(fd)


def schedule_if_due(settings: Settings) -> PassResult | None:
    """A pass unless one ran within SCHEDULE_INTERVAL."""
    return schedule(settings, unless_since=time.time() - SCHEDULE_INTERVAL)


def last_pass(runs_dir: str) -> float:
    """When the last pass started (epoch s), 0 if never."""
    try:
        fd = open_lock_file(scheduler_lock(runs_dir), create=False)
    except FileNotFoundError:
        return 0.0
    try:
        return _last_pass(fd)
    finally:
        os.close(fd)


def _pass(settings: Settings, runs_dir: str) -> PassResult:
    pool = read_pool(runs_dir)
    waiting = settle(settings, waiting_to_plan(runs_dir, pool))
    placed, dropped = _live_placements(runs_dir, {w.run_id for w in waiting}, pool,
                                       settings.placement_timeout)
    now = make_run_timestamp()
    decided = plan(waiting, pool, placed, now)
    sent: list[Assignment] = []
    if decided.assignments:
        by_id = {w.run_id: w for w in waiting}
        try:
            with BrokerSession(settings) as session:
                for assignment in decided.assignments:
                    if _place(runs_dir, by_id[assignment.run_id], assignment, session,
                              settings.placement_timeout):
                        sent.append(assignment)
        except BrokerUnavailable as e:
            log.warning("placement pass: %s; placements are redone after %g s",
                        e, settings.placement_timeout)
    _preempt(runs_dir, decided.preemptions)
    for assignment in sent:
        log.info("run %s: placed on %s%s", assignment.run_id, assignment.node.node,
                 f" with GPUs {','.join(assignment.gpus)}" if assignment.gpus else "")
    return PassResult(sent, dropped)


def _preempt(runs_dir: str, preemptions: dict[str, str]) -> None:
    """Ask each victim's keeper to stop it (the cancel file, which it reads twice a second);
    once per victim."""
    for victim, by in preemptions.items():
        try:
            run = resolve_run_id(runs_dir, victim)
            if read_cancel(run) is not None:
                continue  # asked already (or cancelled)
            write_cancel(run, preempted_by=by)
        except (RunLookupError, OSError) as e:
            log.warning("run %s: cannot ask it to make room: %s", victim, e)
            continue
        log.info("run %s: preempted by %s: asked to stop", victim, by)


def _live_placements(runs_dir: str, waiting: set[str], pool: PoolState,
                     timeout: float) -> tuple[list[Placement], int]:
    """The placements still on their way; stale ones are given back (under the run lock)."""
    live_nodes = {n.info.node for n in pool.nodes}
    cutoff = make_run_timestamp() - int(timeout * 1_000_000)
    kept, dropped = [], 0
    for placement in read_placements(runs_dir):
        if placement.run_id not in waiting:
            remove_placement(runs_dir, placement.run_id)
        elif placement.node in live_nodes and placement.at > cutoff:
            kept.append(placement)
        elif _unplace(runs_dir, placement):
            dropped += 1
        else:
            kept.append(placement)  # its keeper holds the run: leave it be
    return kept, dropped


def _unplace(runs_dir: str, placement: Placement) -> bool:
    """Give a stale placement back; False if the run's lock is held (a keeper has it)."""
    lock = lock_waiting(runs_dir, placement.run_id)
    if not isinstance(lock, RunLock):
        return isinstance(lock, Gone)
    with lock:
        record = lock.record()
        if record.state is RunState.QUEUED and record.placed_node is not None:
            lock.advance(record, Event.PLACE, RunState.QUEUED,
                         placed_node=None, placed_gpus=None, placed_at=None)
        remove_placement(runs_dir, placement.run_id)
    log.info("run %s: its placement on %s went stale; placing it again",
             placement.run_id, placement.node)
    return True


def _place(runs_dir: str, waiting: Waiting, assignment: Assignment,
           session: BrokerSession, timeout: float) -> bool:
    """Commit one assignment under the run lock and send it; False if the run moved on."""
    lock = lock_waiting(runs_dir, waiting.run_id)
    if isinstance(lock, Gone):
        log.info("run %s: %s; dropped from the waiting index", waiting.run_id, lock)
        return False
    if not isinstance(lock, RunLock):
        return False  # a keeper or finalize has it now: the next pass sees what it did
    run = lock.run
    with lock:
        record = lock.record()
        if os.path.exists(run_meta_path(run, "started")):
            remove_waiting(runs_dir, run.id)
            log.info("run %s: started outside the queue (gage run); Gage's run now", run.id)
            return False
        if record.state is not RunState.QUEUED:
            remove_waiting(runs_dir, run.id)
            return False
        if read_waiting_entry(runs_dir, run.id) is None or _fresh(record.placed_at, timeout):
            return False  # ended, started or placed since the pass read the index
        node = assignment.node
        commit_placement(lock, record, node.host, node.node, assignment.gpus)
    # Sent once the lock is let go: the keeper it reaches takes the lock at once.
    session.send(EXEC_TASK, run.id, node_queue(node.node), run)
    return True


def _fresh(placed_at: int | None, timeout: float) -> bool:
    """A placement younger than the timeout (one whose file was lost counts until then)."""
    return placed_at is not None and make_run_timestamp() - placed_at < int(timeout * 1_000_000)


def _take_lock(runs_dir: str) -> int | None:
    fd = open_lock_file(scheduler_lock(runs_dir), create=True)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        if lock_fd(fd):
            return fd
        if time.monotonic() > deadline:
            os.close(fd)
            return None
        time.sleep(0.01)


def _last_pass(fd: int) -> float:
    try:
        return float(json.loads(os.pread(fd, STAMP_LIMIT, 0) or b"{}").get("pass", 0))
    except (ValueError, TypeError, AttributeError):
        return 0.0


def _stamp(fd: int, now: float) -> None:
    data = json.dumps({"pass": now, "pid": os.getpid()}).encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
