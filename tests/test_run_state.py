"""The run state model, the run record, the run lock, and reconcile, without workers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import pytest
from support.records import commit, hold, submitted

from gage_queue.layout import queue_file, waiting_entry
from gage_queue.locks import LockFileMissing, is_locked, lock_path, read_record, try_lock
from gage_queue.queue_meta import requester, write_cancel
from gage_queue.record import RunRecord, decode_record
from gage_queue.snapshots import queue_state, run_state
from gage_queue.states import (
    ENDED,
    TRANSITIONS,
    EndReason,
    Event,
    GageFacts,
    IllegalTransition,
    RunSnapshot,
    RunState,
    check_transition,
    derive_state,
)
from gage_queue.waiting import read_waiting_entry
from gage_runs.meta import meta_exit_code, write_timestamp
from gage_worker.reconcile import reconcile

S = RunState
STAGED = GageFacts(staged=True, initialized=True)
STARTED = GageFacts(staged=True, initialized=True, started=True)
GAGE_RUNNING = GageFacts(staged=True, initialized=True, started=True, proc_lock=True)


@pytest.mark.parametrize("snapshot, state", [
    # Not the queue's: Gage's own status, whatever else is there.
    (RunSnapshot(GageFacts(initialized=True)), S.PENDING),
    (RunSnapshot(STAGED), S.STAGED),
    (RunSnapshot(GAGE_RUNNING), S.RUNNING),
    (RunSnapshot(GageFacts(exit_code=0)), S.COMPLETED),
    (RunSnapshot(GageFacts(exit_code=2)), S.ERROR),
    (RunSnapshot(GageFacts(exit_code=-15)), S.TERMINATED),
    (RunSnapshot(STAGED, submitted=True, committed=None), S.STAGED),  # no readable record
    # The queue's.
    (RunSnapshot(GageFacts(initialized=True), True, S.QUEUED), S.PENDING),  # staging
    (RunSnapshot(STAGED, True, S.QUEUED), S.QUEUED),
    (RunSnapshot(STAGED, True, S.QUEUED, locked=True), S.QUEUED),  # a keeper deciding
    (RunSnapshot(GAGE_RUNNING, True, S.QUEUED), S.RUNNING),  # `gage run --start` took it
    (RunSnapshot(STARTED, True, S.QUEUED), S.STAGED),  # ... and died: Gage's, not lost
    (RunSnapshot(STARTED, True, S.RUNNING, locked=True), S.RUNNING),
    (RunSnapshot(STARTED, True, S.RUNNING, locked=False), S.LOST),
    (RunSnapshot(STARTED, True, S.FINALIZING), S.FINALIZING),
    (RunSnapshot(GageFacts(exit_code=0), True, S.FINALIZING), S.FINALIZING),  # half-finalized
    (RunSnapshot(GageFacts(exit_code=0), True, S.COMPLETED), S.COMPLETED),
    (RunSnapshot(GageFacts(exit_code=0), True, S.FINALIZE_FAILED), S.FINALIZE_FAILED),
])
def test_derive_state(snapshot, state):
    assert derive_state(snapshot) is state


def test_every_command_knows_every_state():
    from gage_submit.cli import STATUSES

    assert sorted(STATUSES) == sorted(state.value for state in RunState)


def test_transition_table():
    assert check_transition(S.QUEUED, Event.START, S.RUNNING) is S.RUNNING
    assert check_transition(S.FINALIZING, Event.FINALIZE, S.ERROR) is S.ERROR
    for bad in [(S.QUEUED, Event.FINALIZE, S.COMPLETED), (S.RUNNING, Event.START, S.RUNNING),
                (S.COMPLETED, Event.START, S.RUNNING), (S.LOST, Event.START, S.RUNNING),
                (S.FINALIZE_FAILED, Event.FINALIZE, S.COMPLETED)]:
        with pytest.raises(IllegalTransition):
            check_transition(*bad)
    # A run ends only through finalize, and nothing leaves an ended state.
    assert {key for key, targets in TRANSITIONS.items() if targets & ENDED} == {
        (S.FINALIZING, Event.FINALIZE)}
    assert not [key for key in TRANSITIONS if key[0] in ENDED]  # read_record trusts a cached ENDED record


def test_record_round_trip_and_damage():
    record = RunRecord(S.FINALIZING, exit_code=-15, reason=EndReason.CANCELLED,
                       detail="cancelled by ann@laptop", host="gpu7", finalize_attempts=1)
    assert decode_record(record.encode()) == record
    assert decode_record(record.encode() + b'": "left over from a longer record"}\n') == record
    assert decode_record(b"") is None
    assert decode_record(b"{not json") is None
    assert decode_record(b'{"state": "exploded"}') is None
    assert decode_record(b"[1, 2]") is None


# -- the run lock

HOLD = """\
import os, sys, time
from gage_queue.locks import lock_fd
fd = os.open(sys.argv[1], os.O_RDWR)
assert lock_fd(fd)
print("locked", flush=True)
if sys.argv[2:] == ["fork"]:
    if os.fork() == 0:
        time.sleep(60)  # the child shares the lock and outlives its parent
    os._exit(0)
time.sleep(60)
"""


@pytest.fixture
def holder():
    """Processes that hold a run's lock, as a keeper on any host would."""
    procs: list[subprocess.Popen] = []

    def hold_lock(run, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, lock_path(run), *args],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout.readline().strip() == "locked"
        procs.append(proc)
        return proc

    yield hold_lock
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_lock_is_exclusive_across_processes(worker_bed, holder):
    run = submitted(worker_bed.stage())
    assert not is_locked(run)
    proc = holder(run)
    assert is_locked(run)
    assert try_lock(run) is None
    assert read_record(run) == RunRecord()  # reading a held lock file is harmless
    assert is_locked(run)
    os.killpg(proc.pid, 9)
    proc.wait()
    assert not is_locked(run)
    with try_lock(run) as lock:
        assert is_locked(run)  # seen from this very process, through another descriptor
        assert try_lock(run) is None
        os.close(os.open(lock_path(run), os.O_RDONLY))  # a close elsewhere drops nothing
        assert is_locked(run)
        lock.commit(RunRecord(S.RUNNING, host="h"))
    assert not is_locked(run)
    assert read_record(run) == RunRecord(S.RUNNING, host="h")
    assert oct(os.stat(lock_path(run)).st_mode & 0o777) == oct(0o666)  # any user may lock


def test_lock_is_held_while_any_process_shares_it(worker_bed, holder):
    """The keeper's run inherits the lock: it stays held until the last holder exits."""
    run = submitted(worker_bed.stage())
    proc = holder(run, "fork")
    proc.wait()
    assert is_locked(run)  # the parent is gone, its child holds on
    os.killpg(proc.pid, 9)
    _wait_until(lambda: not is_locked(run))


def test_no_lock_file_no_lock(worker_bed):
    """Nobody but the submitter creates a lock file, and none is followed through a link."""
    run = worker_bed.stage()  # staged, never submitted
    with pytest.raises(LockFileMissing):
        try_lock(run)
    assert not os.path.exists(lock_path(run))
    assert not is_locked(run)
    submitted(run)
    os.remove(lock_path(run))
    elsewhere = worker_bed.root / "elsewhere"
    elsewhere.write_text("")
    os.symlink(elsewhere, lock_path(run))
    with pytest.raises(LockFileMissing, match="not a regular file"):
        try_lock(run)
    assert elsewhere.read_text() == ""


# -- states as the commands see them


def test_queue_states(worker_bed, holder):
    plain = worker_bed.stage()
    assert run_state(plain) == "staged"  # not submitted: Gage's status

    queued = submitted(worker_bed.stage())
    assert run_state(queued) == "queued"

    running = submitted(worker_bed.stage())
    write_timestamp(running, "started")
    commit(running, state=S.RUNNING, host="gpu7", node="w1@gpu7")
    holder(running)
    state = queue_state(running)
    assert (state.state, state.host, state.node) == ("running", "gpu7", "w1@gpu7")

    lost = submitted(worker_bed.stage())
    write_timestamp(lost, "started")
    commit(lost, state=S.RUNNING, host="gpu7")
    assert run_state(lost) == "lost"

    exited = submitted(worker_bed.stage())
    commit(exited, state=S.FINALIZING, exit_code=3, reason=EndReason.FAILED, detail="exit 3")
    assert (run_state(exited), queue_state(exited).reason) == ("finalizing", "exit 3")

    failed = submitted(worker_bed.stage())
    commit(failed, state=S.FINALIZE_FAILED, exit_code=0, finalize_error="OSError: disk full")
    assert queue_state(failed).reason == "finalize failed: OSError: disk full"


# -- reconcile


def _age_enqueued(run, seconds: float) -> None:
    with open(queue_file(run, "enqueued"), "w") as f:
        f.write(str(int((time.time() - seconds) * 1_000_000)))


def _queued(bed, *, age: float = 0.0):
    run = submitted(bed.stage())
    _age_enqueued(run, age)
    return run


def _embedded_messages(bed, queue: str) -> list[str]:
    folder = bed.runs_dir / ".gage-queue" / "broker" / "messages"
    return [n for n in os.listdir(folder) if n.endswith(f".{queue}.msg")]


def _ago(seconds: float) -> int:
    return int((time.time() - seconds) * 1_000_000)


def test_reconcile(worker_bed, holder):
    settings = worker_bed.settings()  # embedded broker, threshold 2 s
    host = socket.gethostname()
    plain = worker_bed.stage()
    plain_started = worker_bed.stage()
    write_timestamp(plain_started, "started")  # e.g. `gage run` in progress
    by_gage = _queued(worker_bed, age=60)
    write_timestamp(by_gage, "started")  # `gage run --start` took a queued run
    fresh = _queued(worker_bed)
    stale = _queued(worker_bed, age=60)
    cancelled = _queued(worker_bed)
    write_cancel(cancelled)
    lost = _queued(worker_bed)
    write_timestamp(lost, "started")
    commit(lost, state=S.RUNNING, host=host)
    running = _queued(worker_bed)
    write_timestamp(running, "started")
    commit(running, state=S.RUNNING, host=host)
    holder(running)
    exited = _queued(worker_bed)
    commit(exited, state=S.FINALIZING, exit_code=0, ended=_ago(60))
    retried = _queued(worker_bed)  # two failed attempts: waits 2 * threshold after the last
    commit(retried, state=S.FINALIZING, exit_code=0, finalize_attempts=2,
           finalize_tried=_ago(3))
    given_up = _queued(worker_bed)
    commit(given_up, state=S.FINALIZE_FAILED, exit_code=0, finalize_attempts=3)

    done = reconcile(settings)

    assert sorted(line.split(": ", 1)[1] for line in done) == sorted([
        f"terminated (cancelled by {requester()} before it started)",
        f"terminated (its keeper on {host} died)",
        "sent finalize to queue gage-finalize",
    ])
    assert run_state(plain) == "staged" and run_state(plain_started) == "staged"
    assert run_state(by_gage) == "staged"  # Gage's now: never re-sent, never lost
    assert run_state(fresh) == run_state(stale) == "queued"
    assert meta_exit_code(cancelled) == -15 and meta_exit_code(lost) == -9
    assert read_record(lost).reason is EndReason.WORKER_LOST
    assert read_record(cancelled).reason is EndReason.CANCELLED
    assert run_state(running) == "running"
    assert run_state(exited) == run_state(retried) == "finalizing"
    assert run_state(given_up) == "finalize-failed"
    assert _embedded_messages(worker_bed, "gage") == []  # a queued run needs no message
    assert len(_embedded_messages(worker_bed, "gage-finalize")) == 1

    # Later: a queued run lost its waiting entry (a crash mid-submit, say).
    # The scheduler places runs from that index: reconcile puts it back, once.
    os.remove(waiting_entry(settings.runs_dir, stale.id))
    assert reconcile(settings) == [
        f"{stale.id[:8]} ({stale.name}): queued but not in the waiting index; added"]
    assert reconcile(settings) == []
    assert read_waiting_entry(settings.runs_dir, stale.id).queue == "gage"
    # The retried run's backoff (4 s since its last attempt) has passed: its
    # last attempt is made older instead of waiting for it.
    commit(retried, state=S.FINALIZING, exit_code=0, finalize_attempts=2,
           finalize_tried=_ago(5))
    assert reconcile(settings) == [
        f"{retried.id[:8]} ({retried.name}): sent finalize to queue gage-finalize"]


def test_lost_on_a_dead_host(worker_bed):
    """Nobody holds the host's alive lock: the host is lost, not only its worker."""
    run = _queued(worker_bed)
    write_timestamp(run, "started")
    commit(run, state=S.RUNNING, host="gone-host")
    reconcile(worker_bed.settings())
    record = read_record(run)
    assert (record.state, record.reason, record.detail) == (
        S.TERMINATED, EndReason.HOST_LOST, "its host gone-host was lost")


def test_reconcile_goes_on_past_a_bad_run(worker_bed):
    broken = _queued(worker_bed)
    os.remove(lock_path(broken))
    os.mkdir(lock_path(broken))  # a lock file that cannot be opened
    lost = _queued(worker_bed)
    write_timestamp(lost, "started")
    commit(lost, state=S.RUNNING, host=socket.gethostname())
    reconcile(worker_bed.settings())
    assert run_state(lost) == "terminated"


def test_a_held_lock_is_never_recovered(worker_bed):
    run = _queued(worker_bed)
    write_timestamp(run, "started")
    with hold(run, state=S.RUNNING, host=socket.gethostname()):
        assert reconcile(worker_bed.settings()) == []
        assert run_state(run) == "running"
