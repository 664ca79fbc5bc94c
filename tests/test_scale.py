"""Cost that grows with the active runs: the active index, the reconcile lease, listing.

Runs are made with the real helpers (`record_submission`, the run lock);
workers are real processes on a private redis-server.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import socket
import time

import pytest
from support.records import commit, submitted
from support.workers import wait_for

from gage_queue import active
from gage_queue.cancel import request_cancel
from gage_queue.locks import read_record
from gage_queue.settings import Settings
from gage_queue.snapshots import run_state
from gage_queue.states import EndReason, RunState
from gage_runs.meta import init_run_meta, make_run, meta_exit_code, write_timestamp
from gage_runs.runs_dir import list_runs, select_runs
from gage_runs.types import OpCmd, OpDef, OpRef, Run
from gage_worker.cancels import sweep_cancels
from gage_worker.lease import hold_workers_lock, try_lease
from gage_worker.reconcile import reconcile, reconcile_if_due
from gage_worker.worker import WorkerOptions, finalize_warning, worker_argv

OPDEF = OpDef("train", {"exec": "python train.py"})


def staged(runs_dir) -> Run:
    run = make_run(OpRef("proj", "train"), str(runs_dir))
    init_run_meta(run, OPDEF, {}, OpCmd("python train.py", {}))
    write_timestamp(run, "staged")
    return run


def entries(runs_dir) -> set[str]:
    return set(active.active_ids(str(runs_dir)))


def settings_for(runs_dir) -> Settings:
    return Settings(runs_dir=str(runs_dir), reconcile_interval=60, reconcile_threshold=300)


def lost(runs_dir) -> Run:
    """A run committed running whose keeper is gone: nothing holds its lock."""
    run = submitted(staged(runs_dir))
    write_timestamp(run, "started")
    commit(run, state=RunState.RUNNING, host=socket.gethostname())
    return run


# ---------------------------------------------------------------------
# the index


def test_submit_adds_the_entry_and_finalize_removes_it(tmp_path):
    """The entry exists from submit on; a finalize that ends the run removes it."""
    run = submitted(staged(tmp_path))
    assert entries(tmp_path) == {run.id}
    assert request_cancel(run) == "queued"
    assert sweep_cancels(settings_for(tmp_path)) == 1  # a worker's cancel sweep ends it
    assert run_state(run) == "terminated"
    assert entries(tmp_path) == set()


def test_a_finalize_failed_run_keeps_its_entry(tmp_path):
    run = submitted(staged(tmp_path))
    commit(run, state=RunState.FINALIZE_FAILED, exit_code=0, finalize_attempts=3)
    reconcile(settings_for(tmp_path))
    assert entries(tmp_path) == {run.id}


def test_reconcile_on_a_missing_index_entry(tmp_path):
    """An owed run missing from the index is found by the full pass, and recovered."""
    run = lost(tmp_path)
    active.remove(str(tmp_path), run.id)

    reconcile(settings_for(tmp_path))
    assert run_state(run) == "lost"  # the periodic pass reads the index only

    done = reconcile(settings_for(tmp_path), full=True)
    assert done[0] == "1 active run(s) missing from the index: added"
    assert run_state(run) == "terminated" and meta_exit_code(run) == -9
    assert read_record(run).reason is EndReason.WORKER_LOST
    assert entries(tmp_path) == set()


def test_an_entry_left_for_an_ended_run_is_dropped(tmp_path):
    """Ended (a finalize that died before removing it), deleted, or taken by Gage."""
    ended = submitted(staged(tmp_path))
    commit(ended, state=RunState.COMPLETED, exit_code=0)
    deleted = submitted(staged(tmp_path))
    taken = submitted(staged(tmp_path))
    write_timestamp(taken, "started")  # `gage run --start` took it
    queued = submitted(staged(tmp_path))
    shutil.rmtree(deleted.meta_dir)

    assert reconcile(settings_for(tmp_path)) == []
    assert entries(tmp_path) == {queued.id}


def test_an_entry_of_a_run_being_submitted_is_kept_for_a_while(tmp_path):
    """The entry comes before `queue/submitted`: young, it is a submit in progress."""
    run = staged(tmp_path)
    active.add(run)
    reconcile(settings_for(tmp_path))
    assert entries(tmp_path) == {run.id}
    old = time.time() - 3600
    os.utime(active.entry_path(str(tmp_path), run.id), (old, old))
    reconcile(settings_for(tmp_path))
    assert entries(tmp_path) == set()


class OpenCounter:
    def __init__(self):
        self.opens = 0


@contextlib.contextmanager
def counting_opens():
    counter = OpenCounter()
    real_open, real_os_open, real_listdir = builtins.open, os.open, os.listdir

    def counted(real):
        def call(*args, **kwargs):
            counter.opens += 1
            return real(*args, **kwargs)
        return call

    builtins.open, os.open, os.listdir = (
        counted(real_open), counted(real_os_open), counted(real_listdir))
    try:
        yield counter
    finally:
        builtins.open, os.open, os.listdir = real_open, real_os_open, real_listdir


def test_reconcile_opens_do_not_grow_with_finished_runs(tmp_path):
    """A pass opens as many files with 200 finished runs as with none."""
    for _ in range(4):
        run = submitted(staged(tmp_path))
        with open(os.path.join(run.meta_dir, "queue", "enqueued"), "w") as f:
            f.write(str(time.time_ns() // 1000))  # just sent: nothing to re-send
    settings = settings_for(tmp_path)
    reconcile(settings)
    with counting_opens() as before:
        assert reconcile(settings) == []
    for _ in range(200):
        run = submitted(staged(tmp_path))
        commit(run, state=RunState.COMPLETED, exit_code=0)
    reconcile(settings)  # drops their entries, as a finalize would have
    with counting_opens() as after:
        assert reconcile(settings) == []
    assert after.opens == before.opens
    assert before.opens <= 4 * 40


# ---------------------------------------------------------------------
# one reconciler at a time


def test_the_lease_is_held_by_one_and_a_pass_is_done_once_per_interval(tmp_path):
    settings = settings_for(tmp_path)
    lease = try_lease(str(tmp_path))
    assert lease is not None
    assert try_lease(str(tmp_path)) is None  # another worker: skips
    assert reconcile_if_due(settings) is None
    lease.release()

    assert reconcile_if_due(settings) == []  # nobody did one yet: a (full) pass
    assert reconcile_if_due(settings) is None  # just done: skipped
    assert reconcile_if_due(settings, first=True) == []  # the first worker: a full pass
    with try_lease(str(tmp_path)) as held:
        stamp = held.stamp()
    assert time.time() - stamp.last_full < 5 and str(os.getpid()) in stamp.by


def test_the_first_worker_is_the_one_no_other_worker_precedes(tmp_path):
    first_fd, first = hold_workers_lock(str(tmp_path))
    second_fd, second = hold_workers_lock(str(tmp_path))
    assert (first, second) == (True, False)
    os.close(first_fd)
    os.close(second_fd)
    third_fd, third = hold_workers_lock(str(tmp_path))
    assert third
    os.close(third_fd)


def test_the_first_worker_repairs_the_index_at_start(redis_bed):
    """A lost run missing from the index is recovered by a worker that starts."""
    run = lost(redis_bed.runs_dir)
    active.remove(str(redis_bed.runs_dir), run.id)
    redis_bed.start_worker()
    wait_for(lambda: run_state(run) == "terminated", 20, "the lost run to be recovered")
    assert "missing from the index" in redis_bed.logs()


# ---------------------------------------------------------------------
# finalize where it is cheap


def test_gpu_workers_take_finalize_only_when_told(tmp_path):
    settings = Settings(runs_dir=str(tmp_path))
    gpus = settings.with_overrides(gpus=("0", "1"))

    def queues(s: Settings, **options) -> str:
        argv = worker_argv(s, WorkerOptions(**options))
        return next(a for a in argv if a.startswith("--queues=")).partition("=")[2]

    assert queues(settings) == "gage,gage-finalize"
    assert queues(gpus, queues=("gpu",)) == "gpu"
    assert queues(gpus, queues=("gpu",), finalize=True) == "gpu,gage-finalize"
    assert queues(settings, finalize=False) == "gage"
    assert queues(settings, queues=("gage-finalize",)) == "gage-finalize"
    assert finalize_warning(settings, WorkerOptions()) is None
    assert "does not consume the finalize queue gage-finalize (it has GPUs)" in (
        finalize_warning(gpus, WorkerOptions(queues=("gpu",))))


def test_a_gpu_worker_says_it_does_not_finalize(redis_bed):
    worker = redis_bed.start_worker("-Q", "gpu", "--gpus", "0")
    assert "WARNING] gage-worker: this worker does not consume the finalize queue" in worker.log()


# ---------------------------------------------------------------------
# listing


def test_a_full_id_is_found_without_listing_the_runs_dir(tmp_path, monkeypatch):
    run = staged(tmp_path)
    staged(tmp_path)

    def no_scan(*args, **kwargs):
        raise AssertionError("listed the runs dir")

    monkeypatch.setattr(os, "scandir", no_scan)
    monkeypatch.setattr(os, "listdir", no_scan)
    assert [r.id for r in select_runs(str(tmp_path), [run.id])] == [run.id]
    with pytest.raises(AssertionError, match="listed"):
        select_runs(str(tmp_path), [run.id[:8]])


def test_runs_with_equal_mtimes_are_ordered_by_their_timestamps(tmp_path):
    """The sort is by the stamp files' mtimes; ties (a coarse clock) by what they hold."""
    runs = [staged(tmp_path) for _ in range(4)]
    same = time.time_ns()
    for run in runs:
        os.utime(os.path.join(run.meta_dir, "staged"), ns=(same, same))
    assert [r.id for r in list_runs(str(tmp_path))] == [r.id for r in reversed(runs)]
