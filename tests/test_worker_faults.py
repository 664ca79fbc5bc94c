"""Faults with real workers on a real redis-server: each run executes once."""

from __future__ import annotations

import time

import psutil
import pytest
from support.workers import wait_for

from gage_runs.meta import meta_exit_code
from gage_worker.enqueue import enqueue_run
from gage_worker.errors import BrokerUnavailable
from gage_worker.lock import is_locked
from gage_worker.queue_meta import read_heartbeat
from gage_worker.state import queue_status


def _run_proc(bed, run) -> psutil.Process:
    """The run's process, from the heartbeat its supervisor writes."""
    heartbeat = wait_for(lambda: read_heartbeat(run), 20, "a heartbeat")
    return psutil.Process(heartbeat["pid"])


def test_sigkill_worker_mid_run(redis_bed):
    """The run ends terminated and finalized, its lock free, never re-run."""
    a = redis_bed.start_worker("-c", "1")
    long_run = redis_bed.submit(redis_bed.stage(sleep=60))
    wait_for(lambda: queue_status(long_run) == "running", 20, "the long run to start")
    others = redis_bed.stage_and_submit(4)
    b = redis_bed.start_worker("-c", "1")
    run_proc = _run_proc(redis_bed, long_run)
    assert run_proc.parent().pid in [p.pid for p in a.pool()]

    a.kill()

    assert redis_bed.wait_status([long_run], timeout=20) == {long_run.id: "terminated"}
    assert meta_exit_code(long_run) == -9
    assert not is_locked(long_run)
    wait_for(lambda: not run_proc.is_running(), 5, "the orphaned run process to be killed")
    assert set(redis_bed.wait_status(others, timeout=30).values()) == {"completed"}
    # Redis redelivers the killed worker's unacked message after the
    # visibility timeout (4 s): worker b takes it and does nothing.
    wait_for(
        lambda: f"run {long_run.id}: already stopped" in b.log(), 20,
        "the redelivered message to be acked as a no-op",
    )
    assert len(redis_bed.executions(long_run)) == 1
    assert [len(redis_bed.executions(run)) for run in others] == [1] * 4


def test_sigkill_pool_child_only(redis_bed):
    """Celery requeues the message of a dead pool child; the redelivery finalizes."""
    worker = redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=60))
    run_proc = _run_proc(redis_bed, run)
    child = run_proc.parent()
    assert child.pid in [p.pid for p in worker.pool()]

    child.kill()

    assert redis_bed.wait_status([run], timeout=20) == {run.id: "terminated"}
    assert meta_exit_code(run) == -9
    wait_for(lambda: not run_proc.is_running(), 5, "the orphaned run process to be killed")
    after = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(after) == {after[0].id: "completed"}
    assert len(redis_bed.executions(run)) == 1
    assert worker.proc.poll() is None


def test_same_run_delivered_twice_at_once_and_after(redis_bed):
    redis_bed.start_worker("-c", "1", wait=False)
    redis_bed.start_worker("-c", "1")
    run = redis_bed.stage(sleep=1.5)
    settings = redis_bed.settings()
    redis_bed.submit(run)
    enqueue_run(run, settings=settings)
    enqueue_run(run.id, settings=settings)

    assert redis_bed.wait_status([run]) == {run.id: "completed"}
    enqueue_run(run, settings=settings)

    def noops() -> int:
        return sum(
            log.count(f"run {run.id}: already stopped")
            + log.count(f"run {run.id}: locked by another process")
            + log.count(f"run {run.id}: already executed")
            for log in (w.log() for w in redis_bed.workers)
        )

    wait_for(lambda: noops() >= 3, 15, "three duplicate deliveries to be no-ops")
    assert len(redis_bed.executions(run)) == 1
    assert meta_exit_code(run) == 0


def test_redis_restarted_without_persistence(redis_bed):
    """Queued messages are lost; reconcile re-sends them; the running run goes on."""
    worker = redis_bed.start_worker("-c", "1")
    first = redis_bed.submit(redis_bed.stage(sleep=2))
    wait_for(lambda: queue_status(first) == "running", 20, "the first run to start")
    queued = redis_bed.stage_and_submit(5)
    assert redis_bed.redis.client().llen("gage") == 5

    redis_bed.redis.restart()

    assert redis_bed.redis.client().llen("gage") == 0
    states = redis_bed.wait_status([first, *queued], timeout=60)
    assert set(states.values()) == {"completed"}
    assert [len(redis_bed.executions(r)) for r in [first, *queued]] == [1] * 6
    assert "re-sent to queue gage" in worker.log()


def test_broker_down_at_submit_and_at_worker_start(redis_bed):
    redis_bed.redis.stop()
    run = redis_bed.stage()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="stays staged and reconcile will send it"):
        redis_bed.submit(run)
    assert time.monotonic() - started < 8
    assert queue_status(run) == "queued"

    worker = redis_bed.start_worker("-c", "1", wait=False)
    time.sleep(2)
    assert worker.proc.poll() is None, worker.log()
    assert " ready." not in worker.log()
    redis_bed.redis.start()

    worker.wait_ready(timeout=40)
    assert redis_bed.wait_status([run], timeout=30) == {run.id: "completed"}
    assert len(redis_bed.executions(run)) == 1
