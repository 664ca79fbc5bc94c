"""Cancel (queued and running) and the per-run time limit, with a real worker."""

from __future__ import annotations

import time

import pytest
from support.workers import wait_for

from gage_queue.cancel import request_cancel
from gage_queue.locks import is_locked
from gage_queue.queue_meta import requester, write_cancel
from gage_queue.snapshots import queue_state, run_state
from gage_queue.waiting import read_waiting_entry
from gage_runs.meta import meta_exit_code

pytestmark = pytest.mark.system  # real gage-worker processes on a redis-server


def _output(run) -> str:
    with open(f"{run.meta_dir}/output/40_run") as f:
        return f.read()


def _runner_log(run) -> str:
    with open(f"{run.meta_dir}/log/runner") as f:
        return f.read()


def test_cancel_queued_runs(redis_bed):
    """A request only, from the laptop; a worker ends the run before it starts:
    its cancel sweep, or the keeper its message reaches."""
    at_once = redis_bed.submit(redis_bed.stage())
    assert run_state(at_once) == "queued"
    assert request_cancel(at_once) == "queued"  # the state it was in: nothing else done
    assert run_state(at_once) == "queued"
    assert queue_state(at_once).reason.startswith(f"cancelled by {requester()}: requested")
    assert meta_exit_code(at_once) is None

    on_delivery = redis_bed.submit(redis_bed.stage())
    write_cancel(on_delivery)  # as if a cancel raced with the worker taking the lock
    normal = redis_bed.submit(redis_bed.stage())
    redis_bed.start_worker("-c", "1")

    states = redis_bed.wait_status([at_once, on_delivery, normal])
    assert states == {at_once.id: "terminated", on_delivery.id: "terminated",
                      normal.id: "completed"}
    assert meta_exit_code(on_delivery) == -15
    assert redis_bed.executions(at_once) == []
    assert redis_bed.executions(on_delivery) == []
    assert len(redis_bed.executions(normal)) == 1
    assert meta_exit_code(at_once) == -15
    assert queue_state(at_once).reason == f"cancelled by {requester()} before it started"
    assert read_waiting_entry(str(redis_bed.runs_dir), at_once.id) is None  # never placed
    client = redis_bed.redis.client()  # every message acked: none left for a keeper
    wait_for(lambda: client.llen("gage") == 0 and client.hlen("unacked") == 0, 10,
             "the cancelled run's message to be acked")


def test_the_cancel_sweep_ends_a_queued_run_behind_a_long_backlog(redis_bed):
    """A cancelled run deep in a queue ends within seconds, long before its message
    would reach a keeper: the sweep, not the delivery, ends it."""
    redis_bed.start_worker("-c", "1")
    blocker = redis_bed.submit(redis_bed.stage(sleep=60))
    wait_for(lambda: redis_bed.executions(blocker), 20, "the blocker to start")
    waiting = redis_bed.submit(redis_bed.stage())
    assert request_cancel(waiting) == "queued"
    wait_for(lambda: run_state(waiting) == "terminated", 5, "the sweep to end the run")
    assert redis_bed.executions(waiting) == []
    assert meta_exit_code(waiting) == -15
    assert run_state(blocker) == "running"  # the sweep touched nothing else
    request_cancel(blocker)
    assert redis_bed.wait_status([blocker], timeout=20) == {blocker.id: "terminated"}


def test_cancel_running_runs_within_two_seconds(redis_bed):
    redis_bed.start_worker("-c", "2")
    polite = redis_bed.submit(redis_bed.stage(sleep=60))
    stubborn = redis_bed.submit(redis_bed.stage(sleep=60, ignore_term=True))
    for run in (polite, stubborn):
        wait_for(lambda run=run: redis_bed.executions(run), 20, "the run to start")
        wait_for(lambda run=run: "started" in _output(run), 10, "live output")

    started = time.monotonic()
    assert request_cancel(polite) == "running"
    assert request_cancel(stubborn) == "running"
    wait_for(lambda: run_state(polite) in ("finalizing", "terminated"), 2.0,
             "SIGTERM to end the run")
    elapsed = time.monotonic() - started

    assert redis_bed.wait_status([polite, stubborn], timeout=15) == {
        polite.id: "terminated", stubborn.id: "terminated"}
    assert elapsed < 2.0
    assert meta_exit_code(polite) == -15
    assert meta_exit_code(stubborn) == -9  # ignored SIGTERM: SIGKILL after the grace
    assert f"cancelled by {requester()}: sending SIGTERM" in _runner_log(stubborn)
    assert "sending SIGKILL" in _runner_log(stubborn)
    assert "done" not in _output(polite)
    wait_for(lambda: not is_locked(polite) and not is_locked(stubborn), 2, "locks to be free")
    assert len(redis_bed.executions(polite)) == len(redis_bed.executions(stubborn)) == 1


def test_time_limit(redis_bed):
    redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=60), time_limit=1)
    started = time.monotonic()

    assert redis_bed.wait_status([run], timeout=20) == {run.id: "terminated"}

    assert time.monotonic() - started < 8
    assert meta_exit_code(run) == -15
    assert "time limit of 1 s reached" in _runner_log(run)
    assert len(redis_bed.executions(run)) == 1
