"""Placement on several hosts: N distinct GPUs of one host, priorities, no starvation, drain.

Two hosts with fake GPU ids (strings; no GPU is needed) on the GlusterFS
bed (tests/support/multihost.py): every lock and placement crosses client
mounts. Each run records where it ran, the GPUs it saw and when it
started and ended; the claims are checked on those records.
"""

from __future__ import annotations

import subprocess
import threading
import time
from itertools import combinations

import pytest
from support.workers import wait_for, worker_command

from gage_queue.attempts import next_attempt
from gage_queue.cancel import request_cancel
from gage_queue.locks import read_record
from gage_queue.queue_meta import read_submitted
from gage_queue.requests import RunRequest
from gage_queue.states import EndReason, RunState

pytestmark = pytest.mark.system  # GlusterFS hosts in namespaces, workers, a redis-server

HOST_GPUS = {"host-a": {"0", "1", "2", "3"}, "host-b": {"0", "1"}}


def _gpu_workers(bed):
    bed.start_worker("host-a", "--gpus", "0,1,2,3", "--finalize", wait=False)
    bed.start_worker("host-b", "--gpus", "0,1", "--finalize")
    bed.workers[0].wait_ready()


def _span(bed, run):
    (start,) = bed.executions(run)
    gpus = start["gpus"].split(",") if start["gpus"] else []
    return start["host"], gpus, start["time"], bed.ended(run)


def _running(run, timeout=30):
    return wait_for(lambda: (r := read_record(run)) and r.state is RunState.RUNNING and r.pid,
                    timeout, "the run to be running")


def test_a_mixed_grid_gets_n_distinct_gpus_of_one_host_and_never_waits_while_they_are_free(
        multihost_bed):
    bed = multihost_bed
    _gpu_workers(bed)
    sizes = [1, 2, 4, 1, 2, 1, 1, 2, 4, 1, 2, 1, 1, 1]
    runs = [bed.submit(bed.stage(sleep=1.5), request=RunRequest(gpus=n)) for n in sizes]

    assert set(bed.wait_status(runs, timeout=120).values()) == {"completed"}
    spans = [_span(bed, run) for run in runs]
    for run, n, (host, gpus, _, _) in zip(runs, sizes, spans, strict=True):
        assert len(gpus) == len(set(gpus)) == n, (n, gpus)
        assert set(gpus) <= HOST_GPUS[host], (host, gpus)
        assert read_record(run).gpus == gpus  # the record says what the run saw
    for (h1, g1, s1, e1), (h2, g2, s2, e2) in combinations(spans, 2):
        if h1 == h2 and set(g1) & set(g2):
            assert e1 <= s2 or e2 <= s1, "a GPU held by two runs at once"
    # No run waits at the head of the queue while a host has its GPUs free.
    delays = _head_delays(sizes, spans)
    assert max(delays) < 3.0, delays


def _head_delays(sizes, spans):
    """Per run (in submit order): seconds from when it was first in line and fit on some
    host (by the other runs' recorded spans) to its start."""
    delays = []
    for i, (n, (_, _, start, _)) in enumerate(zip(sizes, spans, strict=True)):
        head = max([s for _, _, s, _ in spans[:i]], default=spans[0][2])
        moments = sorted({head, *(e for _, _, _, e in spans if e and e > head)})
        fit = next((t for t in moments if _fits_at(t, n, spans, i)), start)
        delays.append(max(0.0, start - max(fit, head)))
    return delays


def _fits_at(t, n, spans, me):
    for host, gpus in HOST_GPUS.items():
        busy = {g for j, (h, used, s, e) in enumerate(spans)
                if j != me and h == host and s <= t < (e or float("inf")) for g in used}
        if len(gpus - busy) >= n:
            return True
    return False


def test_a_priority_run_submitted_after_fifty_starts_next_and_priority_reorders(multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-a", "--gpus", "0", "--finalize")
    blocker = bed.submit(bed.stage(sleep=60))
    _running(blocker)
    low = [bed.submit(bed.stage()) for _ in range(50)]
    urgent = bed.submit(bed.stage(), request=RunRequest(priority=10))
    raised = subprocess.run(
        ["gage-submit", "priority", low[30].id, "5"], env=bed.worker_env("laptop"),
        capture_output=True, text=True, timeout=60)
    assert raised.returncode == 0, raised.stderr
    request_cancel(blocker)  # the pool frees up

    assert set(bed.wait_status([urgent, *low], timeout=180).values()) == {"completed"}
    starts = {run.id: bed.executions(run)[0]["time"] for run in [urgent, *low]}
    order = sorted(starts, key=starts.get)
    assert order[:2] == [urgent.id, low[30].id]
    assert order[2:] == [run.id for i, run in enumerate(low) if i != 30]  # FIFO within a priority


def test_a_four_gpu_run_behind_a_stream_of_one_gpu_runs_starts_when_its_host_is_free(
        multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-a", "--gpus", "0,1,2,3", "--finalize")
    before, after, stop = [], [], threading.Event()
    big: list = []

    def stream():  # keeps about four 1-GPU runs waiting, until the big run starts (15 s at most)
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < 15:
            (after if big else before).append(bed.submit(bed.stage(sleep=1.5),
                                                         request=RunRequest(gpus=1)))
            time.sleep(0.3)

    submitter = threading.Thread(target=stream)
    submitter.start()
    time.sleep(4)
    big.append(bed.submit(bed.stage(sleep=0.5), request=RunRequest(gpus=4)))
    # The stream goes on while the big run waits (a starved one would wait past its 15 s);
    # a run submitted once the big run has started cannot jump ahead of it.
    wait_for(lambda: bed.executions(big[0]) or not submitter.is_alive(), 30,
             "the big run to start, or the stream to end")
    stop.set()
    submitter.join()

    runs = [*before, big[0], *after]
    assert after, "no run was submitted while the big run waited"
    assert set(bed.wait_status(runs, timeout=180).values()) == {"completed"}
    big_start = bed.executions(big[0])[0]["time"]
    ahead_end = max(bed.ended(run) for run in before)
    assert big_start <= ahead_end + 3.0, (big_start, ahead_end)  # bounded: no starvation
    assert all(bed.executions(run)[0]["time"] >= big_start for run in after)


def test_a_worker_killed_with_gpus_held_and_runs_placed_on_it_loses_nothing(multihost_bed):
    bed = multihost_bed
    _gpu_workers(bed)
    runs = [bed.submit(bed.stage(sleep=2), request=RunRequest(gpus=2)) for _ in range(6)]
    on_a = wait_for(lambda: [r for r in runs if (rec := read_record(r)) and rec.host == "host-a"
                             and rec.state is RunState.RUNNING], 30, "runs on host-a")
    bed.workers[0].kill()  # its keepers, and their GPU locks, live on
    bed.start_worker("host-a", "--gpus", "0,1,2,3", "--finalize")

    assert set(bed.wait_status(runs, timeout=120).values()) == {"completed"}
    spans = [_span(bed, run) for run in runs]
    assert all(len(bed.executions(run)) == 1 for run in runs)
    for (h1, g1, s1, e1), (h2, g2, s2, e2) in combinations(spans, 2):
        if h1 == h2 and set(g1) & set(g2):
            assert e1 <= s2 or e2 <= s1, "a GPU held by two runs at once"
    assert on_a


def test_a_host_lost_with_a_reservation_on_it(multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-a", "--gpus", "0,1", "--finalize", wait=False)
    bed.start_worker("host-b", "--gpus", "0,1", "--finalize")
    bed.workers[0].wait_ready()
    holders = [bed.submit(bed.stage(sleep=60), request=RunRequest(gpus=1)) for _ in range(2)]
    short = bed.submit(bed.stage(sleep=3), request=RunRequest(gpus=1))
    wait_for(lambda: all(read_record(r).state is RunState.RUNNING for r in [*holders, short]),
             30, "three runs running")
    big = bed.submit(bed.stage(), request=RunRequest(gpus=2))  # reserves a host: waits
    later = bed.submit(bed.stage(), request=RunRequest(gpus=1))  # behind it
    lost_host = read_record(holders[0]).host
    bed.hosts[lost_host].kill()

    assert bed.wait_status([big, later], timeout=120) == {big.id: "completed",
                                                          later.id: "completed"}
    assert len(bed.executions(big)) == 1 and len(bed.executions(later)) == 1
    assert bed.executions(big)[0]["time"] <= bed.executions(later)[0]["time"] + 0.5


def test_the_broker_restarted_while_runs_are_placed_loses_none(multihost_bed):
    bed = multihost_bed
    bed.start_worker("host-a", "--gpus", "0,1", "--finalize",
                     env=bed.worker_env("host-a", GAGE_PLACEMENT_TIMEOUT="5"))
    runs = [bed.submit(bed.stage(sleep=1), request=RunRequest(gpus=1)) for _ in range(6)]
    _running(runs[0])
    bed.redis.restart()  # without persistence: every message is gone

    assert set(bed.wait_status(runs, timeout=120).values()) == {"completed"}
    assert all(len(bed.executions(run)) == 1 for run in runs)


def test_drain_lets_runs_finish_starts_none_and_the_worker_exits_0(multihost_bed, tmp_path):
    bed = multihost_bed
    drained = bed.start_worker("host-a", "-c", "2", "--finalize")
    running = [bed.submit(bed.stage(sleep=4)) for _ in range(2)]
    for run in running:
        _running(run)
    said = tmp_path / "drain.out"  # `gage-worker drain` on host-a: its workers
    ask = bed.hosts["host-a"].spawn([*worker_command(), "drain"], env=bed.worker_env("host-a"),
                                    log_path=said)
    assert ask.wait(timeout=60) == 0, said.read_text()
    assert f"draining {drained.node}: 2 run(s) to finish" in said.read_text()
    waiting = bed.submit(bed.stage())

    assert drained.proc.wait(timeout=60) == 0
    assert bed.wait_status(running) == {run.id: "completed" for run in running}
    assert read_record(waiting).state is RunState.QUEUED  # nothing started it there
    by_name = subprocess.run([*worker_command(), "drain", drained.node],
                             env=bed.worker_env("laptop"), capture_output=True, text=True,
                             timeout=60)
    assert by_name.returncode == 2  # it is gone: no live worker of that name
    assert by_name.stderr.startswith(f"gage-worker: error: no live worker named {drained.node} ")
    bed.start_worker("host-b", "-c", "1", "--finalize")
    assert bed.wait_status([waiting]) == {waiting.id: "completed"}
    assert bed.executions(waiting)[0]["host"] == "host-b"


def test_a_run_with_retries_whose_host_dies_completes_as_attempt_2_on_the_other_host(
        multihost_bed):
    """(With no retries, the default, a run whose host dies stays terminated, host-lost:
    test_multihost.py's test_host_b_dies_mid_run.)"""
    bed = multihost_bed
    bed.start_worker("host-a", "-c", "1", "--finalize", wait=False)
    bed.start_worker("host-b", "-c", "1", "--finalize")
    bed.workers[0].wait_ready()
    first = bed.submit(bed.stage(sleep=3), request=RunRequest(retries=2))
    _running(first)
    dead = read_record(first).host
    survivor = "host-b" if dead == "host-a" else "host-a"
    bed.hosts[dead].kill()

    assert bed.wait_status([first], timeout=60) == {first.id: "terminated"}
    assert read_record(first).reason is EndReason.HOST_LOST
    second = next_attempt(first)
    assert second is not None and second.name != first.name
    assert bed.wait_status([second], timeout=60) == {second.id: "completed"}
    (start,) = bed.executions(second)
    assert start["host"] == survivor
    assert start["resume"] == str(bed.runs_dir_for(survivor) / first.id)
    submitted = read_submitted(second)
    assert (submitted["attempt"], submitted["retry_of"], submitted["retries"]) == (2, first.id, 2)
    assert next_attempt(second) is None
    waited = subprocess.run(["gage-submit", "wait", first.id, "--json"],
                            env=bed.worker_env("laptop"), capture_output=True, text=True,
                            timeout=60)
    assert waited.returncode == 0, waited.stderr  # followed to its last attempt: completed
