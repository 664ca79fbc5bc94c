"""Queue-owned runs in a chosen state, made the way the worker makes them.

Each helper takes the real run lock and commits a real record through it
(`gage_queue.locks`), so the code under test reads exactly what a keeper
or a finalize would have left.
"""

from __future__ import annotations

import socket

from gage_queue.broker.send import record_submission
from gage_queue.locks import RunLock, try_lock
from gage_queue.record import RunRecord
from gage_queue.waiting import commit_placement
from gage_runs.types import Run


def submitted(run: Run, *, queue: str = "gage", time_limit: float | None = None,
              schedule: str | None = None) -> Run:
    record_submission(run, queue=queue, time_limit=time_limit, schedule=schedule)
    return run


def commit(run: Run, **fields) -> RunRecord:
    """Commit a record with `fields` under the lock, then release it."""
    with hold(run, **fields) as lock:
        return lock.record()


def hold(run: Run, **fields) -> RunLock:
    """Commit a record with `fields` and keep holding the lock (as a live keeper)."""
    lock = try_lock(run)
    assert lock is not None, f"run {run.id} is locked"
    lock.commit(RunRecord(**fields))
    return lock


def placed(run: Run, node: str, gpus: tuple[str, ...] = ()) -> Run:
    """Place a submitted run on `node` of this host, as a scheduler pass does."""
    with try_lock(run) as lock:
        commit_placement(lock, lock.record(), socket.gethostname(), node, gpus)
    return run
