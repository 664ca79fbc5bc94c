"""What Celery monitoring (events, Flower) says about runs: FAILURE unless completed."""

from __future__ import annotations

import subprocess
import sys
import time

from support.workers import wait_for


def test_events_show_failed_runs_as_failures(redis_bed):
    celery = [sys.executable, "-m", "celery", "-A", "gage_worker"]
    worker = redis_bed.start_worker("-l", "info", "-E", command=[*celery, "worker"])
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
