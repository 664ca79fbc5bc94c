"""The faults of the scheduling issue applied to a run waiting on another (`--after`) and to
a pending retry (`--retries`): the broker restarted without persistence, the worker
SIGKILLed (its main process and pool), and the worker killed in the middle of a placement
pass (there is no scheduler process: the pass runs in a worker under `scheduler.lock`).
Each time every run executes exactly once and the chain ends completed: nothing stuck.

One host, real `gage-worker -c 1` processes on a private redis-server
(`support.submit_cli.worker_pool`), runs submitted with `gage-submit` as a user does. The
`step` op counts each start of its run in a file outside the run and then waits for its
gate file, which the test creates when the run should end (a retry, which has
`GAGE_RESUME_RUN_DIR`, does not wait). Host loss with a retry, on several hosts, is
test_scheduling.py's.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.submit_cli import GageSubmit, submitted_run, worker_pool
from support.workers import Bed, wait_for

from gage_queue.attempts import next_attempt
from gage_queue.layout import placed_dir, scheduler_lock, waiting_dir
from gage_queue.locks import probe_path, read_record
from gage_queue.record import RunRecord
from gage_queue.states import EndReason, RunState
from gage_runs.meta import meta_timestamp
from gage_runs.runs_dir import find_run
from gage_runs.types import Run

pytestmark = pytest.mark.system  # gage-worker processes, a redis-server

STEP_OP = """
[step]
description = "Count a start, then wait for a gate file (a retry does not)"
exec = "python step.py"
config = "step.py"
"""

STEP_PY = """\
import json, os, time
from paths import COUNTS, GATES

gate = ""

resumed = os.environ.get("GAGE_RESUME_RUN_DIR")
with open(os.path.join(COUNTS, os.environ["RUN_ID"]), "a") as f:
    f.write(json.dumps({"time": time.time(), "resume": resumed}) + "\\n")
print("started", flush=True)
deadline = time.monotonic() + 60
while gate and not resumed and not os.path.exists(os.path.join(GATES, gate)):
    if time.monotonic() > deadline:
        raise SystemExit("its gate never opened")
    time.sleep(0.1)
print("done", flush=True)
"""


@dataclass
class Pool:
    """The bed of `worker_pool` (one worker, `-c 1`), `gage-submit`, and the step op's files."""

    bed: Bed
    gage_submit: GageSubmit
    counts: Path
    gates: Path

    def step(self, *args: str) -> tuple[str, Run]:
        """Submit one `step` run; its state word and run."""
        state, _, run_id = submitted_run(self.gage_submit, "step", *args)
        return state, find_run(str(self.bed.runs_dir), run_id)

    def open(self, gate: str) -> None:
        (self.gates / gate).touch()

    def starts(self, run: Run) -> list[dict[str, Any]]:
        """One entry per start of the run's command."""
        path = self.counts / run.id
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []

    def new_worker(self) -> None:
        self.bed.start_worker("-c", "1")

    def wait_completed(self, *runs: Run, timeout: float = 45) -> None:
        assert self.bed.wait_status(list(runs), timeout=timeout) == {
            run.id: "completed" for run in runs}

    def nothing_left(self) -> None:
        """No entry left in the waiting index or among the placements on their way."""
        runs_dir = str(self.bed.runs_dir)
        wait_for(lambda: not os.listdir(waiting_dir(runs_dir)) and not _entries(placed_dir(runs_dir)),
                 10, "the waiting index and the placements to be empty")


def _entries(path: str) -> list[str]:
    return os.listdir(path) if os.path.isdir(path) else []


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    with worker_pool(tmp_path, worker_args=("-c", "1")) as (bed, project, gage_submit):
        counts, gates = tmp_path / "counts-step", tmp_path / "gates"
        counts.mkdir()
        gates.mkdir()
        with open(project / "gage.toml", "a") as f:
            f.write(STEP_OP)
        (project / "step.py").write_text(STEP_PY)
        (project / "paths.py").write_text(f"COUNTS = {str(counts)!r}\nGATES = {str(gates)!r}\n")
        yield Pool(bed, gage_submit, counts, gates)


def _record_is(run: Run, state: RunState, timeout: float = 30) -> RunRecord:
    return wait_for(lambda: (r := read_record(run)) and r.state is state and r, timeout,
                    f"run {run.id} to be {state.value}")


def _running(run: Run) -> RunRecord:
    """The record of the run once its command runs (its pid recorded)."""
    return wait_for(lambda: (r := read_record(run)) and r.state is RunState.RUNNING and r.pid
                    and r, 30, f"run {run.id} to be running")


def _restart_broker(pool: Pool) -> None:
    pool.bed.redis.restart()  # no persistence: every message is gone


def _kill_worker(pool: Pool) -> None:
    pool.bed.workers[-1].kill()  # main process and pool; the keepers live on


FAULTS: dict[str, Callable[[Pool], None]] = {
    "broker-restarted": _restart_broker, "worker-killed": _kill_worker}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_run_waiting_for_another_runs_once_after_it_completes(pool, fault):
    """The fault hits while B waits for A, which is running. With the worker killed, A ends
    under its keeper while no worker lives; the new worker finalizes it (reconcile) and its
    pass releases B."""
    _, a = pool.step("gate=a")
    state, b = pool.step("--after", a.id)
    assert state == "waiting"
    _running(a)
    assert read_record(b).state is RunState.WAITING

    FAULTS[fault](pool)
    pool.open("a")
    if fault == "worker-killed":
        _record_is(a, RunState.FINALIZING)  # ended; nobody is left to finalize it
        assert read_record(b).state is RunState.WAITING
        pool.new_worker()

    pool.wait_completed(a, b)
    assert [len(pool.starts(run)) for run in (a, b)] == [1, 1]
    assert meta_timestamp(b, "started") >= meta_timestamp(a, "stopped")
    pool.nothing_left()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_pending_retry_runs_once_after(pool, fault):
    """Attempt 1 (`--retries 1`) is lost (its keeper SIGKILLed, so its command dies with
    it); finalize stages attempt 2, which waits behind a higher-priority run holding the
    only slot. The fault hits then, before attempt 2 starts; then the slot frees (the
    broker restarted) or a new worker comes (the worker killed). A run waiting for attempt
    1 (`--after`) waits for its last attempt and runs once after it."""
    _, first = pool.step("gate=never", "--retries", "1")
    keeper = psutil.Process(_running(first).keeper_pid)
    state, follower = pool.step("--after", first.id)  # waits for first's last attempt
    assert state == "waiting"
    _, hog = pool.step("gate=hog", "--priority", "5")
    assert read_record(hog).state is RunState.QUEUED  # the only slot is taken

    keeper.kill()
    second = wait_for(lambda: next_attempt(first), 30, "attempt 2 to be staged")
    _running(hog)
    assert read_record(second).state is RunState.QUEUED and not pool.starts(second)

    FAULTS[fault](pool)
    if fault == "worker-killed":
        pool.new_worker()  # a node of its own: attempt 2 need not wait for the hog
    else:
        pool.open("hog")  # its slot frees: attempt 2 is placed through the new broker

    waited = pool.gage_submit("wait", first.id, "--json", timeout=60)
    assert waited.code == 0, str(waited)  # followed to attempt 2, which completed
    pool.wait_completed(second)
    record = read_record(first)
    assert (record.state, record.reason) == (RunState.TERMINATED, EndReason.WORKER_LOST)
    assert [len(pool.starts(run)) for run in (first, second)] == [1, 1]
    assert pool.starts(second)[0]["resume"] == first.run_dir
    assert next_attempt(second) is None
    pool.wait_completed(follower)  # the attempt completed: the run after it runs, once
    assert len(pool.starts(follower)) == 1
    assert meta_timestamp(follower, "started") >= meta_timestamp(second, "stopped")
    pool.open("hog")
    if fault == "broker-restarted":  # (under a dead worker it would wait for reconcile)
        pool.wait_completed(hog)
        assert len(pool.starts(hog)) == 1


def test_the_worker_killed_in_the_middle_of_the_pass_that_places_a_released_run(pool):
    """"The scheduler killed": there is no scheduler process; the placement pass runs in a
    worker, under `scheduler.lock`. The broker is frozen (SIGSTOP), so the pass that places
    B once A completed commits B's placement on the worker's node and then hangs sending
    B's message, holding the lock (its stamp names the worker's pid). The worker is
    SIGKILLed then: the lock dies with it, the new worker's pass gives the placement on the
    dead node back, places B on itself, and B runs once."""
    _, a = pool.step("gate=a")
    _, b = pool.step("--after", a.id)
    _running(a)
    worker = pool.bed.workers[0]
    redis_pid = pool.bed.redis.proc.pid
    lock = scheduler_lock(str(pool.bed.runs_dir))
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        pool.open("a")
        _record_is(a, RunState.COMPLETED)
        _record_is(b, RunState.QUEUED)  # released by a pass, which now cannot send it

        def stuck_pass() -> int | None:
            if not probe_path(lock):
                return None
            with open(lock) as f:
                pid = json.load(f).get("pid")
            return pid if pid in {worker.pid, *(p.pid for p in worker.pool())} else None

        wait_for(lambda: read_record(b).placed_node == worker.node, 15,
                 "the pass to commit B's placement on the worker's node")
        wait_for(stuck_pass, 15, "a pass of the worker to hold the scheduler lock")
        assert probe_path(lock) and not pool.starts(b)  # still sending: B's message is not out
        worker.kill()
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert not probe_path(lock)  # it died with its holder
    pool.new_worker()

    pool.wait_completed(a, b)
    assert [len(pool.starts(run)) for run in (a, b)] == [1, 1]
    assert f"run {b.id}: its placement on {worker.node} went stale" in pool.bed.workers[1].log()
    pool.nothing_left()
