"""Queues, GPU slots and the environment a run inherits, with real workers."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from gage_queue.queue_meta import read_submitted

pytestmark = pytest.mark.system  # real gage-worker processes on a redis-server


def _overlap(a: dict, b: dict, duration: float) -> bool:
    return a["time"] < b["time"] + duration and b["time"] < a["time"] + duration


def test_gpu_slots_one_run_per_gpu(redis_bed):
    redis_bed.start_worker(
        "-Q", "gpu", "--gpus", "0,1", "--finalize",
        env=redis_bed.worker_env(CELERY_X="1"),
    )
    runs = redis_bed.stage_and_submit(6, sleep=0.6, queue="gpu")

    assert set(redis_bed.wait_status(runs, timeout=40).values()) == {"completed"}
    records = [redis_bed.executions(run) for run in runs]
    assert [len(r) for r in records] == [1] * 6
    records = [r[0] for r in records]
    assert {r["cuda"] for r in records} == {"0", "1"}
    for i, a in enumerate(records):
        overlapping = [b for b in records[i + 1:] if _overlap(a, b, 0.6)]
        assert len(overlapping) <= 1, "at most two runs at once"
        assert all(b["cuda"] != a["cuda"] for b in overlapping), "one run per GPU"
    assert all(r["worker_env"] == [] for r in records), "no GAGE_*/CELERY_* in runs"
    assert all(read_submitted(run)["queue"] == "gpu" for run in runs)


def test_worker_ignores_other_queues(redis_bed):
    worker = redis_bed.start_worker("-Q", "cpu")
    cpu = redis_bed.stage_and_submit(1, queue="cpu")
    other = redis_bed.stage_and_submit(1, queue="gpu")

    assert redis_bed.wait_status(cpu) == {cpu[0].id: "completed"}
    assert redis_bed.redis.client().llen("gpu") == 1
    assert redis_bed.executions(other[0]) == []
    assert other[0].id not in worker.log()


def test_celery_worker_inspect_and_control_work_unchanged(redis_bed):
    """`celery -A gage_worker` finds the app configured from the environment."""
    celery = [sys.executable, "-m", "celery", "-A", "gage_worker"]
    worker = redis_bed.start_worker("-l", "info", command=[*celery, "worker"])
    node = f"w0@{socket.gethostname()}"
    first = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(first) == {first[0].id: "completed"}  # exec, then finalize
    env = redis_bed.worker_env()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*celery, *args, "-d", node, "-t", "10"], env=env,
                              capture_output=True, text=True, timeout=60)

    ping = run("inspect", "ping")
    queues = run("control", "add_consumer", "extra")

    assert ping.returncode == 0, ping.stderr
    assert "pong" in ping.stdout
    assert queues.returncode == 0, queues.stderr
    assert "add consumer extra" in queues.stdout
    extra = redis_bed.stage_and_submit(1, queue="extra")
    assert redis_bed.wait_status(extra) == {extra[0].id: "completed"}
    assert worker.proc.poll() is None
