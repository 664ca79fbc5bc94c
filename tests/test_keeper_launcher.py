"""The keeper launcher: a spare keeper waits for each job, and nothing outlives the launcher's socket."""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading

import psutil
import pytest
from support.records import placed
from support.workers import wait_for

from gage_queue.broker.send import record_submission
from gage_queue.layout import slot_lock
from gage_queue.locks import lock_fd, open_lock_file, read_record
from gage_queue.settings import Settings
from gage_queue.states import RunState
from gage_runs import OpCmd, OpDef, OpRef, init_run_meta, make_run, stage_run
from gage_worker import launch
from gage_worker.keeper.job import KeeperJob, Outcome, Verdict
from gage_worker.launch import KeeperLauncher, run_keeper
from gage_worker.runenv import run_env

TAG = "KEEPER_LAUNCHER_TEST"


def _launchers() -> set[int]:
    """This test's launchers (tagged through the environment they inherit), not their forks."""
    serve = [sys.executable, "-m", "gage_worker.keeper", "--serve"]
    forked = set()
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        try:
            if (proc.info["cmdline"] or [])[:4] == serve and proc.environ().get(TAG) == TAG:
                forked.add((proc.pid, proc.info["ppid"]))
        except psutil.Error:
            continue
    pids = {pid for pid, _ in forked}
    return {pid for pid, ppid in forked if ppid not in pids}


@pytest.fixture
def bed(tmp_path, monkeypatch):
    monkeypatch.setenv(TAG, TAG)
    launcher = KeeperLauncher()  # this test's own, not one an earlier test started
    monkeypatch.setattr(launch, "_launcher", launcher)
    runs_dir, project = tmp_path / "runs", tmp_path / "project"
    runs_dir.mkdir()
    project.mkdir()
    settings = Settings(runs_dir=str(runs_dir))

    def submitted_run():
        run = make_run(OpRef("bench", "true"), str(runs_dir))
        init_run_meta(run, OpDef("true", {"exec": "true"}), {}, OpCmd(["true"], {}))
        stage_run(run, str(project))
        record_submission(run, queue="gage")
        return placed(run, "n@h")

    yield settings, submitted_run
    launcher.close()


def test_jobs_in_a_row_each_get_their_own_keeper_from_a_waiting_spare(bed):
    settings, submitted_run = bed
    keepers = set()
    for _ in range(3):
        run = submitted_run()
        outcome = run_keeper(run.id, settings, node="n@h", slots=1)
        assert (outcome.verdict, outcome.exit_code) == (Verdict.FINALIZE, 0)
        record = read_record(run)
        assert record.state is RunState.FINALIZING
        keepers.add(record.keeper_pid)
    assert len(keepers) == 3
    (launcher,) = _launchers()

    def spares() -> list[int]:  # the last keeper may still be exiting
        return [p.pid for p in psutil.Process(launcher).children() if p.pid not in keepers]

    wait_for(lambda: len(spares()) == 1, 10, "one spare, waiting for the next job")


def test_a_bad_job_leaves_the_spare_waiting_and_a_closed_socket_ends_it_all(bed):
    settings, submitted_run = bed
    before = _launchers()
    launcher = KeeperLauncher()
    env = functools.partial(run_env, None)
    sock = launcher._server(env)
    (server,) = _launchers() - before
    wait_for(lambda: psutil.Process(server).children(), 10, "the spare to wait")
    (spare,) = psutil.Process(server).children()

    socket.send_fds(sock, [b"not a job"], [])
    socket.send_fds(sock, [b'{"runs_dir": 1}'], [])
    run = submitted_run()
    read_fd, write_fd = os.pipe()
    job = KeeperJob(runs_dir=settings.runs_dir, run_id=run.id, node="n@h", slots=1)
    assert launcher.send(job, write_fd, env)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as answer:
        outcome = Outcome.decode(answer.read())
    assert outcome is not None and outcome.verdict is Verdict.FINALIZE
    assert read_record(run).keeper_pid == spare.pid  # the spare took it, after the bad jobs

    wait_for(lambda: [p for p in psutil.Process(server).children() if p.pid != spare.pid], 10,
             "the next spare")
    (next_spare,) = [p for p in psutil.Process(server).children() if p.pid != spare.pid]
    launcher.close()
    wait_for(lambda: not psutil.pid_exists(server) and not psutil.pid_exists(next_spare.pid), 10,
             "the launcher and its spare to exit")


def test_a_job_taken_after_its_launcher_died_is_kept_and_a_new_launcher_starts(bed):
    settings, submitted_run = bed
    first = submitted_run()
    assert run_keeper(first.id, settings, node="n@h", slots=1).verdict is Verdict.FINALIZE
    (server,) = _launchers()
    wait_for(lambda: psutil.Process(server).children(), 10, "the spare to wait")
    psutil.Process(server).kill()
    wait_for(lambda: not psutil.pid_exists(server), 10, "the launcher to die")

    for _ in range(2):  # the orphaned spare keeps the next; then a new launcher takes over
        run = submitted_run()
        outcome = run_keeper(run.id, settings, node="n@h", slots=1)
        assert (outcome.verdict, outcome.exit_code) == (Verdict.FINALIZE, 0)
        assert read_record(run).state is RunState.FINALIZING
    (new_server,) = _launchers()
    assert new_server != server


def test_a_job_lost_with_its_launcher_is_kept_at_once_by_a_fresh_keeper(bed, caplog):
    """The job sat unread in the socket when launcher and spare died: no 5-minute wait for reconcile."""
    settings, submitted_run = bed
    first = submitted_run()
    assert run_keeper(first.id, settings, node="n@h", slots=1).verdict is Verdict.FINALIZE
    (server,) = _launchers()
    wait_for(lambda: len(psutil.Process(server).children()) == 1, 10, "the spare to wait")
    (spare,) = psutil.Process(server).children()
    stopped = [psutil.Process(server), spare]
    for proc in stopped:
        proc.suspend()  # alive, so the job is sent; stopped, so it is never read

    sent = threading.Event()
    send = launch._launcher.send
    launch._launcher.send = lambda *args: (send(*args), sent.set())[0]  # type: ignore[method-assign]
    run = submitted_run()
    outcomes: list[Outcome] = []
    task = threading.Thread(
        target=lambda: outcomes.append(run_keeper(run.id, settings, node="n@h", slots=1)))
    task.start()
    assert sent.wait(10), "the job was not sent to the stopped launcher"
    assert read_record(run).state is RunState.QUEUED
    for proc in stopped:
        proc.kill()
    task.join(30)

    assert outcomes and (outcomes[0].verdict, outcomes[0].exit_code) == (Verdict.FINALIZE, 0)
    record = read_record(run)
    assert record.state is RunState.FINALIZING and record.keeper_pid != spare.pid
    assert "ended without an answer; asking a fresh keeper" in caplog.text


def test_a_keeper_whose_slot_is_taken_gives_the_run_back_and_the_next_spare_waits(bed):
    """No keeper waits for a slot: a run placed where its slot is taken goes back to the
    scheduler at once, placement cleared; the launcher forks its next spare after that."""
    settings, submitted_run = bed
    first = submitted_run()
    assert run_keeper(first.id, settings, node="n@h", slots=1).verdict is Verdict.FINALIZE
    (server,) = _launchers()
    slot = slot_lock(settings.runs_dir, socket.gethostname(), "n@h", 0)
    held = open_lock_file(slot, create=True)  # the node's one slot, taken
    assert lock_fd(held)
    run = submitted_run()
    try:
        outcome = run_keeper(run.id, settings, node="n@h", slots=1)
        assert outcome.verdict is Verdict.NOTHING
        assert "every slot of n@h is taken" in outcome.message
        record = read_record(run)
        assert (record.state, record.placed_node) == (RunState.QUEUED, None)
        assert wait_for(lambda: len(psutil.Process(server).children()) == 1, 10, "one spare")
    finally:
        os.close(held)
    placed(run, "n@h")
    outcome = run_keeper(run.id, settings, node="n@h", slots=1)
    assert (outcome.verdict, outcome.exit_code) == (Verdict.FINALIZE, 0)
    keeper = read_record(run).keeper_pid
    wait_for(lambda: [p for p in psutil.Process(server).children() if p.pid != keeper], 10,
             "the next spare, once the run started")

