"""What Celery monitoring (events, Flower) says about runs: FAILURE unless completed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.workers import wait_for

from gage_queue.broker.messages import TaskDisplay
from gage_queue.broker.send import task_display
from gage_runs.meta import run_meta_path


def _task_ends(events: str) -> int:
    return events.count("task succeeded") + events.count("task failed")


def _dump_events(redis_bed, run_them, tasks: int) -> str:
    """What `celery events --dump` saw while `run_them()` ran, once it saw `tasks` tasks end."""
    celery = [sys.executable, "-m", "celery", "-A", "gage_worker"]
    client = redis_bed.redis.client()
    bindings = client.smembers("_kombu.binding.celeryev")  # any bound before the dumper
    out = redis_bed.root / "events.txt"
    with open(out, "w") as f:
        dump = subprocess.Popen([*celery, "events", "--dump"], stdout=f, stderr=subprocess.STDOUT,
                                env={**redis_bed.worker_env(), "PYTHONUNBUFFERED": "1"})
    try:
        # Its consumer's queue is bound to the events exchange: no event is lost to it.
        wait_for(lambda: client.smembers("_kombu.binding.celeryev") - bindings, 20,
                 "the dumper to bind its queue")
        run_them()
        wait_for(lambda: _task_ends(out.read_text()) >= tasks, 10,
                 f"the dumper to show {tasks} tasks ended")
    finally:
        dump.terminate()
        dump.wait(20)
    return out.read_text()


def _failing_and_ok(redis_bed):
    failing = redis_bed.submit(redis_bed.stage_script("import sys; sys.exit(3)",
                                                      cmd=["python", "script.py"]))
    ok = redis_bed.submit(redis_bed.stage())
    assert redis_bed.wait_status([failing, ok]) == {failing.id: "error", ok.id: "completed"}
    return failing, ok


def _ended(workers, count: int) -> None:
    def ended() -> int:
        return sum(w.log().count("succeeded") + w.log().count("raised") for w in workers)
    wait_for(lambda: ended() >= count, 10, f"{count} tasks to end")


@pytest.mark.system
def test_events_show_failed_runs_as_failures(redis_bed):
    """An executor that sends finalize to a finalize worker: both tasks show, exec fails."""
    executor = redis_bed.start_worker("--events", "--no-finalize",  # gage-worker's own options
                                      wait=False)
    finalizer = redis_bed.start_worker("--events", "-Q", "gage-finalize")
    executor.wait_ready()
    runs = []
    events = _dump_events(redis_bed, lambda: (runs.extend(_failing_and_ok(redis_bed)),
                                              _ended([executor, finalizer], 4)), tasks=4)
    failing, ok = runs
    failed = [line for line in events.splitlines() if "task failed" in line]
    assert len(failed) == 1, events
    assert "RunFailed" in failed[0] and f"run {failing.id} error (exit 3): exit 3" in failed[0]
    assert events.count("task succeeded") == 3  # the completed run's exec, both finalizes
    assert "Traceback" not in executor.log() + finalizer.log()
    received = [line for line in events.splitlines() if "task received" in line]
    assert any(f"gage.exec count ({ok.name})(" in line for line in received), received
    assert any(f"gage.finalize script ({failing.name})(" in line for line in received), received
    assert "Task gage.finalize" not in executor.log()  # it sent them; it took none


@pytest.mark.system
def test_a_worker_that_takes_finalize_work_finalizes_its_own_runs(redis_bed):
    """No message to itself: one task per run, finalized before the exec task ends."""
    worker = redis_bed.start_worker("--events")
    runs = []
    events = _dump_events(redis_bed, lambda: (runs.extend(_failing_and_ok(redis_bed)),
                                              _ended([worker], 2)), tasks=2)
    failing, ok = runs
    received = [line for line in events.splitlines() if "task received" in line]
    assert len(received) == 2 and "gage.finalize" not in events, received
    assert [line for line in events.splitlines() if "task failed" in line][0].count("RunFailed")
    assert events.count("task succeeded") == 1
    log = worker.log()
    for run in (failing, ok):
        assert f"run {run.id}: finalized" in log
    assert redis_bed.redis.client().llen("gage-finalize") == 0


def test_monitors_see_the_op_the_run_and_its_config(worker_bed):
    run = worker_bed.stage()
    os.chmod(run_meta_path(run, "config.json"), 0o644)
    with open(run_meta_path(run, "config.json"), "w") as f:
        json.dump({"lr": 0.01, "note": "two\nlines", "batch": 32}, f)
    display = task_display("gage.exec", run.id, str(worker_bed.runs_dir))
    assert display.shadow == f"gage.exec count ({run.name})"
    assert display.argsrepr == f"['{run.id}'] batch=32 lr=0.01 note='two\\nlines'"
    assert task_display("gage.exec", run.id, "/nowhere") == TaskDisplay()
