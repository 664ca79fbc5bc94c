"""Many runs through real workers: each executes exactly once."""

from __future__ import annotations

import time

import pytest

from gage_queue.locks import is_locked
from gage_runs.status import run_status

pytestmark = pytest.mark.system  # real gage-worker processes


def test_two_workers_fifty_runs_each_once(redis_bed):
    runs = redis_bed.stage_and_submit(50)
    redis_bed.start_worker("-c", "1", wait=False)
    redis_bed.start_worker("-c", "1")

    states = redis_bed.wait_status(runs, timeout=90)

    assert set(states.values()) == {"completed"}
    assert [len(redis_bed.executions(run)) for run in runs] == [1] * 50
    assert not any(is_locked(run) for run in runs)
    assert all(run_status(run) == "completed" for run in runs)
    logs = [w.log() for w in redis_bed.workers]
    assert all("gage.exec" in log for log in logs), "both workers took runs"


def test_embedded_broker_with_nothing_configured(worker_bed):
    """No GAGE_BROKER_URL: submit and worker meet on the filesystem transport."""
    assert worker_bed.settings().broker_url is None
    runs = worker_bed.stage_and_submit(3)
    worker_bed.start_worker("-c", "2")

    states = worker_bed.wait_status(runs, timeout=30)

    assert set(states.values()) == {"completed"}
    assert [len(worker_bed.executions(run)) for run in runs] == [1, 1, 1]
    assert (worker_bed.runs_dir / ".gage-queue" / "broker" / "messages").is_dir()
    # A run submitted while the worker runs is picked up too.
    late = worker_bed.stage_and_submit(1)
    started = time.monotonic()
    assert worker_bed.wait_status(late, timeout=20) == {late[0].id: "completed"}
    assert time.monotonic() - started < 10
