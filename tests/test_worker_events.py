"""What Celery monitoring (events, Flower) says about runs: FAILURE unless completed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from support.workers import wait_for

from gage_runs.meta import run_meta_path
from gage_worker.enqueue import task_display
from gage_worker.messages import TaskDisplay


def test_events_show_failed_runs_as_failures(redis_bed):
    celery = [sys.executable, "-m", "celery", "-A", "gage_worker"]
    worker = redis_bed.start_worker("--events")  # gage-worker's own option for task events
    env = redis_bed.worker_env()
    dump = subprocess.Popen([*celery, "events", "--dump"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2)  # the dumper's consumer is up
        failing = redis_bed.submit(redis_bed.stage_script("import sys; sys.exit(3)",
                                                          cmd=["python", "script.py"]))
        ok = redis_bed.submit(redis_bed.stage())
        assert redis_bed.wait_status([failing, ok]) == {failing.id: "error", ok.id: "completed"}
        wait_for(lambda: worker.log().count("succeeded") + worker.log().count("raised") >= 4,
                 10, "both exec and both finalize tasks to end")
        time.sleep(1.5)
    finally:
        dump.terminate()
    events = dump.communicate(timeout=20)[0]
    failed = [line for line in events.splitlines() if "task failed" in line]
    assert len(failed) == 1, events
    assert "RunFailed" in failed[0] and f"run {failing.id} error (exit 3): exit 3" in failed[0]
    assert events.count("task succeeded") == 3  # the completed run's exec, both finalizes
    assert "Traceback" not in worker.log()
    received = [line for line in events.splitlines() if "task received" in line]
    assert any(f"gage.exec count ({ok.name})(" in line for line in received), received
    assert any(f"gage.finalize script ({failing.name})(" in line for line in received), received


def test_monitors_see_the_op_the_run_and_its_config(worker_bed):
    run = worker_bed.stage()
    os.chmod(run_meta_path(run, "config.json"), 0o644)
    with open(run_meta_path(run, "config.json"), "w") as f:
        json.dump({"lr": 0.01, "note": "two\nlines", "batch": 32}, f)
    display = task_display("gage.exec", run.id, str(worker_bed.runs_dir))
    assert display.shadow == f"gage.exec count ({run.name})"
    assert display.argsrepr == f"['{run.id}'] batch=32 lr=0.01 note='two\\nlines'"
    assert task_display("gage.exec", run.id, "/nowhere") == TaskDisplay()
