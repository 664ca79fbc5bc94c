"""Several hosts on a real shared file system: exactly once, no run left running, none lost.

Each host is a PID + UTS + mount namespace with its own GlusterFS client
mount of one volume (tests/support/multihost.py); the laptop has a mount
of its own. Every lock, every record and every state read below crosses
those client mounts, with their caches.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import pytest
from support.workers import reconcile_passes, wait_for

from gage_queue.broker.send import enqueue_run
from gage_queue.cancel import request_cancel
from gage_queue.locks import is_locked, read_record, try_lock
from gage_queue.snapshots import queue_state
from gage_queue.states import EndReason, RunState

pytestmark = pytest.mark.system  # GlusterFS hosts in namespaces, workers, a redis-server


def _running_on(run, timeout: float = 20):
    return wait_for(
        lambda: (r := read_record(run)) and r.state is RunState.RUNNING and r.pid and r,
        timeout, "the run to be running",
    )


def test_a_grid_over_two_hosts_runs_each_run_exactly_once(multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-a", "-c", "2", wait=False)
    bed.start_worker("host-b", "-c", "2")
    bed.workers[0].wait_ready()
    runs = bed.stage_and_submit(30)

    assert set(bed.wait_status(runs, timeout=60).values()) == {"completed"}
    executions = [bed.executions(run) for run in runs]
    assert [len(e) for e in executions] == [1] * 30
    hosts = Counter(e[0]["host"] for e in executions)
    assert set(hosts) == {"host-a", "host-b"}, hosts
    assert all(read_record(run).host == e[0]["host"] for run, e in zip(runs, executions, strict=True))


def test_the_laptop_sees_a_run_on_host_b_running_on_b(multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-b", "-c", "1")
    run = bed.submit(bed.stage(sleep=3))
    _running_on(run)

    state = queue_state(run)  # read through the laptop's own mount
    assert (state.state, state.host, state.node) == ("running", "host-b", "w0@host-b")
    assert is_locked(run)
    assert bed.wait_status([run]) == {run.id: "completed"}


def test_host_b_dies_mid_run(multihost_bed):
    """Its run ends terminated, host lost, finalized by host A, never re-run."""
    bed = multihost_bed
    bed.start_worker("host-a", "-c", "1", "-Q", "elsewhere", wait=False)  # takes finalize only
    bed.start_worker("host-b", "-c", "1")
    bed.workers[0].wait_ready()
    run = bed.submit(bed.stage(sleep=60))
    _running_on(run)
    wait_for(lambda: bed.executions(run), 10, "the command to start")

    bed.hosts["host-b"].kill()

    assert bed.wait_status([run], timeout=20) == {run.id: "terminated"}
    record = read_record(run)
    assert (record.exit_code, record.reason, record.detail) == (
        -9, EndReason.HOST_LOST, "its host host-b was lost")
    assert "terminated (its host host-b was lost)" in bed.workers[0].log()
    assert [e["host"] for e in bed.executions(run)] == ["host-b"]


def test_only_host_b_worker_dies_while_its_run_lives(multihost_bed):
    """The run finishes on B with its real exit code; a worker finalizes it; it ran once."""
    bed = multihost_bed
    bed.start_worker("host-a", "-c", "1", "-Q", "elsewhere", wait=False)
    b = bed.start_worker("host-b", "-c", "1")
    bed.workers[0].wait_ready()
    run = bed.submit(bed.stage(sleep=3))
    _running_on(run)

    b.kill()

    # Reconcile passes on host A (read through A's own mount): the run is alive, not lost.
    reconcile_passes(bed.host_view("host-a", bed.runs_dir_for("host-a")), after=time.time())
    assert queue_state(run).state == "running"
    assert bed.wait_status([run], timeout=30) == {run.id: "completed"}
    record = read_record(run)
    assert (record.exit_code, record.reason, record.host) == (0, EndReason.COMPLETED, "host-b")
    assert [e["host"] for e in bed.executions(run)] == ["host-b"]


def test_cancel_from_the_laptop_of_a_run_on_b(multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-b", "-c", "1")
    run = bed.submit(bed.stage(sleep=60))
    _running_on(run)
    wait_for(lambda: bed.executions(run), 10, "the command to start")

    started = time.monotonic()
    assert request_cancel(run) == "running"
    wait_for(lambda: not is_locked(run), 2.0, "every process of the run to be gone")
    assert time.monotonic() - started < 2.0
    assert bed.wait_status([run]) == {run.id: "terminated"}
    record = read_record(run)
    assert record.reason is EndReason.CANCELLED and record.detail.startswith("cancelled by ")
    runs_left = [p for p in bed.hosts["host-b"].processes() if _is_run_of(p, run)]
    assert runs_left == []


def _is_run_of(proc, run) -> bool:
    try:
        return proc.environ().get("RUN_ID") == run.id
    except Exception:
        return False


def test_a_gpu_is_never_held_by_two_runs_after_a_worker_crash(multihost_bed):
    bed = multihost_bed
    first_worker = bed.start_worker("host-b", "-Q", "gpu", "--gpus", "0", "--finalize")
    first = bed.submit(bed.stage(sleep=3), queue="gpu")
    assert (_running_on(first).slot, read_record(first).gpus) == ("slot 0, GPU 0", ["0"])
    first_worker.kill()
    bed.start_worker("host-b", "-Q", "gpu", "--gpus", "0", "--finalize")
    second = bed.submit(bed.stage(), queue="gpu")

    assert bed.wait_status([first, second], timeout=30) == {
        first.id: "completed", second.id: "completed"}
    assert bed.executions(second)[0]["time"] >= read_record(first).ended / 1e6 - 0.2


def test_one_run_delivered_ten_times_at_once_across_both_hosts(multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-a", "-c", "2", wait=False)
    bed.start_worker("host-b", "-c", "2")
    bed.workers[0].wait_ready()
    run = bed.stage(sleep=1)
    bed.submit(run)
    for _ in range(9):
        enqueue_run(run.id, settings=bed.laptop_settings())

    assert bed.wait_status([run], timeout=30) == {run.id: "completed"}
    assert len(bed.executions(run)) == 1
    client = bed.redis.client()  # the last duplicates are acked as no-ops
    wait_for(lambda: client.llen("gage") == 0 and client.hlen("unacked") == 0, 10,
             "every delivery to be acked")
    assert len(bed.executions(run)) == 1


INCREMENT = """\
import sys, time
from gage_runs.meta import run_for_meta_dir
from gage_queue.locks import try_lock
run = run_for_meta_dir(sys.argv[1])
done = 0
while done < int(sys.argv[2]):
    lock = try_lock(run)
    if lock is None:
        time.sleep(0.001)
        continue
    with lock:
        record = lock.record()
        lock.commit(record.but(finalize_attempts=record.finalize_attempts + 1))
    done += 1
"""


def test_decisions_under_the_lock_see_every_commit_of_other_hosts(multihost_bed):
    """Two hosts take turns at one run's lock: no commit of one is missed by the other.

    Their clients cache file data; the record is read and written with
    direct I/O through the locked descriptor, so each host reads what the
    other last committed (plain reads through FUSE lose most updates here).
    """
    bed = multihost_bed
    run = bed.submit(bed.stage())  # no worker: nothing else touches the lock
    procs = [
        bed.hosts[name].spawn(
            [sys.executable, "-c", INCREMENT,
             str(bed.runs_dir_for(name) / f"{run.id}.meta"), "150"],
            log_path=bed.logs_dir / f"increment-{name}.log")
        for name in ("host-a", "host-b")
    ]
    for proc in procs:
        assert proc.wait(60) == 0, (bed.logs_dir / "increment-host-a.log").read_text()
    with try_lock(run) as lock:
        assert lock.record().finalize_attempts == 300
