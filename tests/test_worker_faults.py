"""Faults with real workers on a real redis-server: each run executes once.

A worker's death does not kill its runs (their keepers live on); a
keeper's death kills its run and the run ends `terminated`, worker lost;
duplicate deliveries and broker restarts never run anything twice.
"""

from __future__ import annotations

import time

import psutil
import pytest
from support.workers import wait_for

from gage_queue.broker.send import enqueue_run
from gage_queue.errors import BrokerUnavailable
from gage_queue.locks import is_locked, read_record
from gage_queue.snapshots import run_state
from gage_queue.states import EndReason, RunState
from gage_runs.meta import meta_exit_code

pytestmark = pytest.mark.system  # real gage-worker processes on a redis-server


def _running(run) -> tuple[psutil.Process, psutil.Process]:
    """The run's keeper and its command, once the keeper recorded them."""
    record = wait_for(
        lambda: (r := read_record(run)) and r.state is RunState.RUNNING and r.pid and r, 20,
        "the run to be running",
    )
    return psutil.Process(record.keeper_pid), psutil.Process(record.pid)


def test_sigkill_worker_mid_run(redis_bed):
    """The run finishes with its real exit code; another worker finalizes it."""
    a = redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=1.5))  # the kill comes at once
    keeper, command = _running(run)
    assert command.parent().pid == keeper.pid
    assert keeper.pid not in [p.pid for p in a.pool()]  # no worker process is its parent

    a.kill()

    assert run_state(run) == "running" and is_locked(run)
    b = redis_bed.start_worker("-c", "1")
    assert redis_bed.wait_status([run], timeout=30) == {run.id: "completed"}
    assert meta_exit_code(run) == 0
    assert read_record(run).reason is EndReason.COMPLETED
    with open(f"{run.meta_dir}/output/40_run") as f:
        assert f.read() == "started\ndone\n"  # all its output: no SIGPIPE when its worker died
    assert len(redis_bed.executions(run)) == 1
    others = redis_bed.stage_and_submit(3)
    assert set(redis_bed.wait_status(others, timeout=30).values()) == {"completed"}
    assert b.proc.poll() is None


def test_sigkill_pool_child_only(redis_bed):
    """Celery requeues the dead child's message; the redelivery is a no-op or finalizes."""
    worker = redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=2))
    _running(run)
    worker.pool()[0].kill()

    assert redis_bed.wait_status([run], timeout=30) == {run.id: "completed"}
    after = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(after) == {after[0].id: "completed"}
    assert len(redis_bed.executions(run)) == 1
    assert worker.proc.poll() is None


def test_sigkill_keeper(redis_bed):
    """The command dies with its keeper; the run ends terminated, worker lost, never re-run."""
    worker = redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=60))
    keeper, command = _running(run)
    wait_for(lambda: redis_bed.executions(run), 10, "the command to start")

    keeper.kill()

    wait_for(lambda: not command.is_running() or command.status() == psutil.STATUS_ZOMBIE, 5,
             "the command to die with its keeper")
    assert redis_bed.wait_status([run], timeout=20) == {run.id: "terminated"}
    record = read_record(run)
    assert (record.exit_code, record.reason) == (-9, EndReason.WORKER_LOST)
    wait_for(lambda: not is_locked(run), 2, "finalize to release the lock")
    after = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(after) == {after[0].id: "completed"}
    assert len(redis_bed.executions(run)) == 1
    assert worker.proc.poll() is None


def test_same_run_delivered_many_times_at_once_and_after(redis_bed):
    redis_bed.start_worker("-c", "2", wait=False)
    redis_bed.start_worker("-c", "2")
    run = redis_bed.stage(sleep=1.5)
    settings = redis_bed.settings()
    redis_bed.submit(run)
    for _ in range(5):
        enqueue_run(run.id, settings=settings)

    assert redis_bed.wait_status([run]) == {run.id: "completed"}
    enqueue_run(run, settings=settings)

    client = redis_bed.redis.client()  # all seven deliveries taken and acked
    wait_for(lambda: client.llen("gage") == 0 and client.hlen("unacked") == 0, 20,
             "every delivery to be acked")
    placed = sum(log.count(f"run {run.id}: placed on") for log in (w.log() for w in redis_bed.workers))
    assert placed == 1  # placed once, however many passes the deliveries woke
    assert len(redis_bed.executions(run)) == 1
    assert meta_exit_code(run) == 0


def test_redis_restarted_without_persistence(redis_bed):
    """Queued messages are lost: the runs wait in the runs dir all the same and are placed;
    the running run goes on."""
    worker = redis_bed.start_worker("-c", "1")
    first = redis_bed.submit(redis_bed.stage(sleep=2))
    wait_for(lambda: run_state(first) == "running", 20, "the first run to start")
    queued = redis_bed.stage_and_submit(5)
    assert redis_bed.redis.client().llen("gage") == 5

    redis_bed.redis.restart()

    assert redis_bed.redis.client().llen("gage") == 0
    states = redis_bed.wait_status([first, *queued], timeout=60)
    assert set(states.values()) == {"completed"}
    assert [len(redis_bed.executions(r)) for r in [first, *queued]] == [1] * 6
    assert all(f"run {r.id}: placed on" in worker.log() for r in queued)


def test_broker_down_at_submit_and_at_worker_start(redis_bed):
    redis_bed.redis.stop()
    run = redis_bed.stage()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="stays staged and reconcile will send it"):
        redis_bed.submit(run)
    assert time.monotonic() - started < 8
    assert run_state(run) == "queued"

    worker = redis_bed.start_worker("-c", "1", wait=False)
    # It tries the broker before it starts Celery, and says so after each failed
    # try (nothing else shows it): it has met the broker down and lives on.
    wait_for(lambda: "cannot reach the broker" in worker.log(), 10,
             "the worker's first try at the broker")
    assert worker.proc.poll() is None, worker.log()
    assert " ready." not in worker.log()
    redis_bed.redis.start()

    worker.wait_ready(timeout=40)
    assert redis_bed.wait_status([run], timeout=30) == {run.id: "completed"}
    assert len(redis_bed.executions(run)) == 1
