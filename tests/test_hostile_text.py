"""Text planted in a run's files reaches no terminal raw: not the worker's log lines,
not the reason every command shows."""

from __future__ import annotations

import json

import pytest
from support.workers import wait_for

from gage_queue.layout import queue_file
from gage_queue.snapshots import queue_state

pytestmark = pytest.mark.system

HOSTILE = "\x1b[31mEVIL\x1b[0m\n[2026-01-01 00:00:00,000: INFO/MainProcess] forged"


def test_a_hostile_cancel_requester_is_escaped_in_logs_and_reasons(worker_bed):
    worker = worker_bed.start_worker("-c", "1")
    run = worker_bed.submit(worker_bed.stage(sleep=30))
    wait_for(lambda: worker_bed.executions(run), 20, "the run to start")
    # queue/cancel is writable by everyone who may cancel: anyone can write anything.
    with open(queue_file(run, "cancel"), "w") as f:
        json.dump({"by": HOSTILE}, f)
    assert worker_bed.wait_status([run], timeout=20) == {run.id: "terminated"}

    reason = queue_state(run).reason
    assert "\x1b" not in reason and "\n" not in reason
    assert reason.startswith("cancelled by \\x1b[31mEVIL")
    wait_for(lambda: "EVIL" in worker.log(), 10, "the worker to log the cancel")
    log = worker.log()
    assert "\x1b" not in log
    assert "\n[2026-01-01 00:00:00,000: INFO/MainProcess] forged" not in log
    assert "EVIL\\x1b[0m\\n[2026-01-01" in log
