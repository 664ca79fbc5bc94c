"""The run keeper with real workers, real runs and a real redis-server.

Each test breaks one thing the keeper's promises rest on: the user's
program under `/bin/sh -c`, a process that escapes the run's group, the
run's own meta files, the keeper's own code, finalize, the worker's slots.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support.workers import reconcile_passes, wait_for

from gage_queue.attempts import next_attempt
from gage_queue.broker.send import enqueue_run
from gage_queue.cancel import request_cancel
from gage_queue.layout import queue_file
from gage_queue.locks import is_locked, read_record
from gage_queue.queue_meta import read_submitted, requester
from gage_queue.requests import RunRequest, parse_warning
from gage_queue.snapshots import run_state
from gage_queue.states import EndReason, RunState
from gage_runs.meta import meta_timestamp, run_meta_path
from gage_runs.types import Run

CHECKPOINT = """\
import os, signal, sys, time
def on_term(*_):
    time.sleep(0.5)  # saving takes a while
    open(os.path.join(os.environ["COUNT_DIR"], os.environ["RUN_ID"] + ".ckpt"), "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("training", flush=True)
time.sleep(60)
"""

ESCAPE = """\
import os, subprocess, sys, time
# A grandchild that leaves the run's process group and keeps its stdout.
child = subprocess.Popen([sys.executable, "-c",
    "import os, time; os.setsid(); print('escaped', os.getpid(), flush=True); time.sleep(120)"])
time.sleep(float(os.environ.get("SLEEP", "0.5")))
print("main done", flush=True)
"""


def _output(run) -> str:
    try:
        with open(run_meta_path(run, "output", "40_run")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _escaped_pid(run) -> int:
    line = wait_for(lambda: [ln for ln in _output(run).splitlines() if ln.startswith("escaped")],
                    20, "the escaped process")[0]
    return int(line.split()[1])


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _running_record(run):
    return wait_for(
        lambda: (r := read_record(run)) and r.state is RunState.RUNNING and r.pid and r, 20,
        "the run to be running",
    )


@pytest.mark.system
def test_sigterm_reaches_the_program_under_sh_and_the_grace_is_honoured(redis_bed):
    """Gage's `exec = "python train.py"` runs under /bin/sh -c; the program still saves.

    A cancelled run is terminated whatever it exits with: the run whose
    program is the command itself exits 0 from its handler.
    """
    redis_bed.start_worker("-c", "2", env=redis_bed.worker_env(GAGE_CANCEL_GRACE="3"))
    shell = redis_bed.submit(redis_bed.stage_script(CHECKPOINT, cmd="python script.py"))
    direct = redis_bed.submit(redis_bed.stage_script(CHECKPOINT, cmd=["python", "script.py"]))
    for run in (shell, direct):
        wait_for(lambda run=run: "training" in _output(run), 20, "the run to start")

    started = time.monotonic()
    request_cancel(shell)
    request_cancel(direct)
    assert redis_bed.wait_status([shell, direct], timeout=10) == {
        shell.id: "terminated", direct.id: "terminated"}

    assert time.monotonic() - started < 3 + 2
    for run in (shell, direct):
        assert (redis_bed.counts_dir / f"{run.id}.ckpt").exists(), "its SIGTERM handler ran"
        record = read_record(run)
        assert (record.exit_code, record.reason) == (-15, EndReason.CANCELLED)
    assert read_record(direct).detail == f"cancelled by {requester()} (it exited 0 after SIGTERM)"
    with open(run_meta_path(shell, "log", "runner")) as f:
        assert "sending SIGKILL" not in f.read()


@pytest.mark.system
def test_an_escaped_process_cannot_hold_the_run(redis_bed):
    """A grandchild that calls setsid and keeps stdout is stopped when the command exits."""
    redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage_script(ESCAPE, cmd=["python", "script.py"]))
    escaped = _escaped_pid(run)

    assert redis_bed.wait_status([run], timeout=15) == {run.id: "completed"}
    assert _gone(escaped)
    assert _output(run).endswith("main done\n")
    wait_for(lambda: not is_locked(run), 5, "finalize to let go of the lock it ended the run under")


@pytest.mark.system
def test_cancel_stops_every_descendant_within_grace_plus_two_seconds(redis_bed):
    redis_bed.start_worker("-c", "1")  # grace 1 s
    run = redis_bed.submit(redis_bed.stage_script(ESCAPE, cmd=["python", "script.py"],
                                                  env={"SLEEP": "60"}))
    escaped = _escaped_pid(run)
    command = _running_record(run).pid

    started = time.monotonic()
    request_cancel(run)
    wait_for(lambda: _gone(escaped) and _gone(command) and not is_locked(run), 1 + 2,
             "every process of the run to be gone")
    assert time.monotonic() - started < 3
    assert redis_bed.wait_status([run], timeout=10) == {run.id: "terminated"}


@pytest.mark.system
def test_time_limit_is_recorded_as_the_reason(redis_bed):
    redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=60), time_limit=1)
    assert redis_bed.wait_status([run], timeout=20) == {run.id: "terminated"}
    record = read_record(run)
    assert (record.exit_code, record.reason, record.detail) == (
        -15, EndReason.TIME_LIMIT, "time limit of 1 s reached")


@pytest.mark.system
def test_a_run_that_deletes_its_lock_file_is_neither_rerun_nor_killed(redis_bed):
    script = """\
import os, time
os.remove(os.path.join(os.environ["RUN_DIR"] + ".meta", "queue", "lock"))
print("deleted my lock file", flush=True)
open(os.path.join(os.environ["COUNT_DIR"], os.environ["RUN_ID"]), "a").write("ran\\n")
time.sleep(3)
"""
    redis_bed.start_worker("-c", "2", wait=False)
    redis_bed.start_worker("-c", "2")
    run = redis_bed.submit(redis_bed.stage_script(script, cmd=["python", "script.py"]))
    wait_for(lambda: "deleted" in _output(run), 20, "the run to delete its lock file")
    for _ in range(4):
        enqueue_run(run.id, settings=redis_bed.settings())
    # Every duplicate delivered and acked (acks come after the task): only the
    # first delivery, waiting for its keeper, is still unacked.
    client = redis_bed.redis.client()
    wait_for(lambda: client.llen("gage") == 0 and client.hlen("unacked") == 1, 10,
             "the duplicates to be handled")
    wait_for(lambda: is_locked(run), 10, "its keeper to put the lock file back (its next tick)")
    assert run_state(run) == "running"

    assert redis_bed.wait_status([run], timeout=20) == {run.id: "completed"}
    assert (redis_bed.counts_dir / run.id).read_text() == "ran\n"
    assert "restoring it" in "".join(w.log() for w in redis_bed.workers)


@pytest.mark.system
def test_supervision_fails_closed(redis_bed):
    """An error in the keeper's own code kills the run before anything is recorded."""
    worker = redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=60))
    command = _running_record(run).pid
    os.remove(queue_file(run, "cancel"))
    os.mkdir(queue_file(run, "cancel"))  # reading it now fails inside the keeper

    assert redis_bed.wait_status([run], timeout=15) == {run.id: "terminated"}
    assert _gone(command)
    record = read_record(run)
    assert record.reason is EndReason.SUPERVISION_FAILED
    assert record.detail.startswith("supervision failed: ")
    assert "queue/cancel" in record.detail
    after = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(after) == {after[0].id: "completed"}
    assert worker.proc.poll() is None


@pytest.mark.system
def test_gage_delete_of_a_running_and_of_a_queued_run(redis_bed):
    """`gage delete` renames a run's dirs: a running run is stopped, a queued one never starts."""
    worker = redis_bed.start_worker("-c", "1")
    running = redis_bed.submit(redis_bed.stage(sleep=60))
    command = _running_record(running).pid
    wait_for(lambda: redis_bed.executions(running), 20, "the command to have started")
    queued = redis_bed.submit(redis_bed.stage())
    for run in (queued, running):
        os.rename(run.meta_dir, run.meta_dir + ".deleted")
        os.rename(run.run_dir, run.run_dir + ".deleted")

    wait_for(lambda: _gone(command), 5, "the deleted run to be stopped")
    after = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(after) == {after[0].id: "completed"}
    log = worker.log()
    assert f"run {running.id}: deleted: its meta dir was deleted" in log
    assert f"run {queued.id}: no run {queued.id}" in log  # dropped from the waiting index
    assert "Traceback" not in log
    assert redis_bed.executions(queued) == []


@pytest.mark.system
def test_a_run_deleted_as_its_command_fails_is_deleted_not_recorded(redis_bed):
    """The command fails because its run was deleted, before a tick saw it: still `deleted`."""
    worker = redis_bed.start_worker("-c", "1")
    script = (
        "import os, sys\n"
        "for d in (os.environ['RUN_DIR'] + '.meta', os.environ['RUN_DIR']):\n"
        "    os.rename(d, d + '.deleted')\n"
        "sys.exit(3)\n"
    )
    run = redis_bed.submit(redis_bed.stage_script(script))
    after = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(after) == {after[0].id: "completed"}
    log = worker.log()
    assert f"run {run.id}: deleted: its meta dir was deleted" in log
    assert f"run {run.id}: finalize" not in log
    assert "Traceback" not in log
    deleted = read_record(Run(run.id, run.opref, run.meta_dir + ".deleted", run.run_dir, run.name))
    assert deleted.state is RunState.RUNNING  # nothing was committed after the deletion


@pytest.mark.system
def test_finalize_killed_half_way_is_completed_by_the_next_delivery(redis_bed):
    finalize = "python -c \"import os, time; open(os.environ['run_dir'] + '/hook', 'a').write('x'); time.sleep(2)\""
    a = redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage_script("print('hi')", finalize=finalize))
    wait_for(lambda: os.path.exists(os.path.join(run.run_dir, "hook")), 20, "finalize to begin")
    a.kill()  # in the middle of the finalize hook

    assert run_state(run) == "finalizing"
    redis_bed.start_worker("-c", "1")
    assert redis_bed.wait_status([run], timeout=30) == {run.id: "completed"}
    record = read_record(run)
    assert (record.state, record.finalize_attempts) == (RunState.COMPLETED, 2)
    for name in ("manifest", "log/files", "log/runner", "proc/exit", "stopped"):
        assert os.stat(run_meta_path(run, *name.split("/"))).st_mode & 0o777 == 0o444, name


@pytest.mark.system
def test_finalize_that_keeps_failing_gives_up(redis_bed):
    # Retries after the threshold, then twice that: 0.5 s and 1 s here, not 2 s and 4 s.
    worker = redis_bed.start_worker("-c", "1",
                                    env=redis_bed.worker_env(GAGE_RECONCILE_THRESHOLD="0.5"))
    run = redis_bed.submit(redis_bed.stage_script("print('hi')", finalize="exit 3"))
    wait_for(lambda: run_state(run) == "finalize-failed", 40, "finalize to give up")

    record = read_record(run)
    assert record.finalize_attempts == 3
    assert record.finalize_error == "RunExecError: " + record.finalize_error.split(": ", 1)[1]
    assert "3" in record.finalize_error
    sent = worker.log().count(f"{run.id[:8]} ({run.name}): sent finalize")
    reconcile_passes(redis_bed.runs_dir, after=time.time())  # nothing more is sent
    assert worker.log().count(f"{run.id[:8]} ({run.name}): sent finalize") == sent
    assert read_record(run).finalize_attempts == 3


@pytest.mark.system
def test_a_restarted_worker_does_not_oversubscribe_its_slots(redis_bed):
    """The crashed worker's run still holds its slot (and GPU): the next run waits for it."""
    a = redis_bed.start_worker("-c", "1", "--hostname", "w0@%h")
    first = redis_bed.submit(redis_bed.stage(sleep=3))
    _running_record(first)
    a.kill()
    redis_bed.start_worker("-c", "1", "--hostname", "w0@%h")
    second = redis_bed.submit(redis_bed.stage())

    assert redis_bed.wait_status([first, second], timeout=30) == {
        first.id: "completed", second.id: "completed"}
    first_end = read_record(first).ended / 1e6
    assert redis_bed.executions(second)[0]["time"] >= first_end - 0.2


@pytest.mark.system
def test_gpu_slot_is_never_shared_after_a_worker_crash(redis_bed):
    a = redis_bed.start_worker("-Q", "gpu", "--gpus", "0", "--finalize")
    first = redis_bed.submit(redis_bed.stage(sleep=3), queue="gpu")
    assert (_running_record(first).slot, read_record(first).gpus) == ("slot 0, GPU 0", ["0"])
    a.kill()
    redis_bed.start_worker("-Q", "gpu", "--gpus", "0", "--finalize", "--hostname", "other@%h")
    second = redis_bed.submit(redis_bed.stage(), queue="gpu")

    assert redis_bed.wait_status([first, second], timeout=30) == {
        first.id: "completed", second.id: "completed"}
    first_end = read_record(first).ended / 1e6
    assert redis_bed.executions(second)[0]["time"] >= first_end - 0.2
    assert redis_bed.executions(second)[0]["cuda"] == "0"


@pytest.mark.system
def test_an_error_before_the_command_starts_leaves_the_run_queued(redis_bed):
    """This host cannot start it: the run stays queued and the worker stops taking runs."""
    run = redis_bed.submit(redis_bed.stage())
    runner_log = run_meta_path(run, "log", "runner")
    os.rename(runner_log, runner_log + ".aside")
    os.mkdir(runner_log)  # logging now fails on this host, before the command starts
    worker = redis_bed.start_worker("-c", "1")
    wait_for(lambda: "takes no more runs and drains" in worker.log(), 20, "the worker to give up")
    assert run_state(run) == "queued"
    assert redis_bed.executions(run) == []
    assert read_record(run).state is RunState.QUEUED

    os.rmdir(runner_log)
    os.rename(runner_log + ".aside", runner_log)
    redis_bed.start_worker("-c", "1")
    assert redis_bed.wait_status([run], timeout=30) == {run.id: "completed"}
    assert len(redis_bed.executions(run)) == 1


@pytest.mark.system
def test_a_run_started_by_gage_itself_is_left_to_gage(redis_bed, real_gage):
    """`gage run --start` on a queued run: Gage runs it; no worker runs it, or calls it lost.

    The run goes on until the test opens its gate file (a fixed sleep could end before a
    worker on a loaded machine got to look at it)."""
    run = redis_bed.submit(redis_bed.stage_script(
        "import os, time; print('by gage', flush=True)\n"
        "while not os.path.exists(os.path.join(os.environ['COUNT_DIR'], 'go')): time.sleep(0.1)",
        cmd=["python", "script.py"]))
    gage = subprocess.Popen(
        [str(real_gage.gage), "run", "--start", run.id, "-y", "-q"],
        env=real_gage.env(redis_bed.runs_dir), cwd=redis_bed.root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: run_state(run) == "running", 20, "gage to start it")
        worker = redis_bed.start_worker("-c", "1")
        enqueue_run(run.id, settings=redis_bed.settings())
        wait_for(lambda: f"run {run.id}: started outside the queue" in worker.log(),
                 20, "the placement pass to leave it alone")
        assert run_state(run) == "running"
        (redis_bed.counts_dir / "go").touch()
        assert gage.wait(30) == 0
    finally:
        gage.kill()
    assert run_state(run) == "completed"
    reconcile_passes(redis_bed.runs_dir, after=time.time())  # none finds it lost
    assert run_state(run) == "completed"
    assert "lost" not in worker.log()
    assert _output(run) == "by gage\n"


ANCESTORS = """\
import json, os
secret = os.environ.pop("SECRET_TO_FIND")  # the test tells the run what to look for
seen, hits, pid = [], [], os.getppid()
while pid > 1:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read()
    seen.append([pid, cmdline.replace(b"\\0", b" ").decode()])
    if secret.encode() in cmdline or secret.encode() in environ:
        hits.append(pid)
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rpartition(")")[2].split()[1])
with open(os.path.join(os.environ["COUNT_DIR"], os.environ["RUN_ID"]), "w") as f:
    json.dump({"seen": seen, "hits": hits}, f)
"""


@pytest.mark.system
def test_a_run_finds_no_broker_password_in_its_ancestors(tmp_path):
    """Walking /proc from the run up, as an attacker would: no ancestor holds the password."""
    from support.redis_server import RedisServer
    from support.workers import Bed

    password = "s3cret-" + os.urandom(6).hex()
    server = RedisServer(tmp_path / "redis", password=password)
    server.start()
    bed = Bed(tmp_path / "bed", broker_url=server.url, redis=server)
    try:
        worker = bed.start_worker("-c", "1")
        run = bed.submit(bed.stage_script(ANCESTORS, cmd=["python", "script.py"],
                                          env={"SECRET_TO_FIND": password}))
        assert bed.wait_status([run]) == {run.id: "completed"}
        found = json.loads((bed.counts_dir / run.id).read_text())
        assert found["hits"] == [], found
        assert "gage_worker.keeper" in found["seen"][0][1]  # its parent is its keeper
        workers = {worker.pid, *(p.pid for p in worker.pool())}
        assert not workers & {pid for pid, _ in found["seen"]}, "no worker process is an ancestor"
        with open(f"/proc/{worker.pid}/environ") as f:
            assert password in f.read()  # where the probe would have found it
    finally:
        bed.close()
        server.stop()


@pytest.mark.system
def test_sigterm_to_the_keeper_ends_its_run_as_shutdown(redis_bed):
    """systemd stopping a host's keepers: the run gets its grace, ends terminated, shutdown."""
    redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage(sleep=60))
    record = _running_record(run)
    wait_for(lambda: redis_bed.executions(run), 10, "the command to start")

    os.kill(record.keeper_pid, signal.SIGTERM)

    assert redis_bed.wait_status([run], timeout=15) == {run.id: "terminated"}
    record = read_record(run)
    assert (record.exit_code, record.reason) == (-15, EndReason.SHUTDOWN)
    assert _gone(record.pid)


PARENT = """
import subprocess, sys
from gage_worker.keeper import procs
if sys.argv[1] == "fallback":
    procs.SETPRIV = None
prefix, options = procs.dying_with_parent()
child = subprocess.Popen([*prefix, "sleep", "60"], start_new_session=True, **options)
print(child.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("how", ["setpriv", "fallback"])
def test_the_run_command_dies_with_its_keeper(how):
    """However it is spawned (setpriv, or a preexec_fn without it), SIGKILL of its parent kills it."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, how], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        wait_for(lambda: psutil.Process(child).cmdline() == ["sleep", "60"], 5,
                 "the command to run in place of setpriv")  # same pid: setpriv execs it
        parent.kill()
        parent.wait()
        wait_for(lambda: _gone(child), 5, "the command to die with its parent")
    finally:
        parent.kill()
        parent.wait()


WARNED = """\
import signal, sys, time
start = time.monotonic()
def saved(signum, frame):
    print(f"checkpoint at {time.monotonic() - start:.1f}", flush=True)
signal.signal(signal.SIGUSR1, saved)
time.sleep(30)
"""


@pytest.mark.system
def test_a_signal_before_the_time_limit_lets_the_run_save_a_checkpoint(redis_bed):
    """`--signal USR1@2` with a 4 s time limit: USR1 at about 2 s, then SIGTERM at 4 s."""
    redis_bed.start_worker("-c", "1")
    run = redis_bed.submit(redis_bed.stage_script(WARNED, cmd=["python", "script.py"]),
                           time_limit=4, request=RunRequest(warning=parse_warning("USR1@2")))

    assert redis_bed.wait_status([run], timeout=30) == {run.id: "terminated"}
    (line,) = _output(run).splitlines()
    assert 1.5 <= float(line.split()[-1]) <= 3.0, line
    assert read_record(run).reason is EndReason.TIME_LIMIT
    assert "sending SIGUSR1 to the run's processes, 2 s before its time limit" in \
        Path(run_meta_path(run, "log", "runner")).read_text()


CHECKPOINTED = """\
import os, signal, sys, time
resume = os.environ.get("GAGE_RESUME_RUN_DIR")
if resume and os.path.exists(os.path.join(resume, "checkpoint")):
    with open(os.path.join(resume, "checkpoint")) as f:
        print("resumed from", f.read(), flush=True)
    sys.exit(0)
def save(signum, frame):
    with open("checkpoint", "w") as f:
        f.write("step 7")
    print("checkpoint saved", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
time.sleep(60)
"""


@pytest.mark.system
def test_an_urgent_run_preempts_two_preemptible_runs_which_resume_as_new_attempts(redis_bed):
    redis_bed.start_worker("--gpus", "0,1,2,3", "--finalize")  # grace 1 s
    low = RunRequest(gpus=2, preemptible=True)
    victims = [redis_bed.submit(redis_bed.stage_script(CHECKPOINTED, cmd=["python", "script.py"]),
                                request=low) for _ in range(2)]
    for victim in victims:
        _running_record(victim)
    asked = time.time()
    urgent = redis_bed.submit(redis_bed.stage_script("print('urgent')", cmd=["python", "script.py"]),
                              request=RunRequest(gpus=4, priority=10))

    assert redis_bed.wait_status([urgent], timeout=30) == {urgent.id: "completed"}
    started = meta_timestamp(urgent, "started") / 1e6
    assert started - asked < 1 + 4, started - asked  # the grace, and a few seconds
    assert read_record(urgent).gpus == ["0", "1", "2", "3"]
    for victim in victims:
        record = read_record(victim)
        assert (record.state, record.reason) == (RunState.TERMINATED, EndReason.PREEMPTED)
        assert record.detail == f"preempted by {urgent.name} (it exited 0 after SIGTERM)"
        assert _output(victim) == "checkpoint saved\n"
        attempt = next_attempt(victim)
        assert attempt is not None
        assert redis_bed.wait_status([attempt], timeout=30) == {attempt.id: "completed"}
        assert _output(attempt) == "resumed from step 7\n"
        submitted = read_submitted(attempt)
        assert (submitted["attempt"], submitted["retried"], submitted["preempted"]) == (2, 0, 1)


SIGNALS_NOTED = """\
import os, signal, sys, time
if os.environ.get("GAGE_RESUME_RUN_DIR"):
    sys.exit(0)  # the next attempt: nothing left to do
def note(signum, frame):
    print(f"{signal.Signals(signum).name} {time.time():.3f}", flush=True)
    if signum == signal.SIGTERM and not os.environ.get("IGNORE_TERM"):
        sys.exit(0)
signal.signal(signal.SIGUSR1, note)
signal.signal(signal.SIGTERM, note)
print("running", flush=True)
time.sleep(60)
"""


@pytest.mark.system
def test_a_preempted_run_with_a_signal_gets_it_first_within_the_grace(redis_bed):
    """`--signal USR1@3` and a 4 s grace: USR1 at once, SIGTERM min(3, 4/2) = 2 s later,
    SIGKILL 4 s after USR1 (the warning comes out of the grace, not on top of it); one
    victim exits on SIGTERM, the other ignores it and is killed; the urgent run starts
    within the grace and a few seconds."""
    grace = 4
    redis_bed.start_worker("--gpus", "0,1,2,3", "--finalize",
                           env=redis_bed.worker_env(GAGE_CANCEL_GRACE=str(grace)))
    low = RunRequest(gpus=2, preemptible=True, warning=parse_warning("USR1@3"))
    exits, ignores = (
        redis_bed.submit(redis_bed.stage_script(SIGNALS_NOTED, cmd=["python", "script.py"],
                                                env=env), time_limit=60, request=low)
        for env in ({}, {"IGNORE_TERM": "1"}))
    for victim in (exits, ignores):
        wait_for(lambda victim=victim: "running" in _output(victim), 20, "the handlers")
    asked = time.time()
    urgent = redis_bed.submit(redis_bed.stage_script("print('urgent')", cmd=["python", "script.py"]),
                              request=RunRequest(gpus=4, priority=10))

    assert redis_bed.wait_status([urgent], timeout=30) == {urgent.id: "completed"}
    assert meta_timestamp(urgent, "started") / 1e6 - asked < grace + 3
    sent = {}
    for victim in (exits, ignores):
        lines = [line.split() for line in _output(victim).splitlines()[1:]]
        assert [name for name, _ in lines] == ["SIGUSR1", "SIGTERM"], lines
        sent[victim.id] = {name: float(at) for name, at in lines}
        assert 1.8 <= sent[victim.id]["SIGTERM"] - sent[victim.id]["SIGUSR1"] <= 3.0, lines
        assert (read_record(victim).state, read_record(victim).reason) == (
            RunState.TERMINATED, EndReason.PREEMPTED)
        assert (f"sending SIGUSR1 to the run's processes, preempted by {urgent.name}:"
                f" SIGTERM in 2 s") in Path(run_meta_path(victim, "log", "runner")).read_text()
    assert read_record(exits).detail == f"preempted by {urgent.name} (it exited 0 after SIGTERM)"
    killed = read_record(ignores)
    assert killed.exit_code == -9
    assert grace - 0.5 <= killed.ended / 1e6 - sent[ignores.id]["SIGUSR1"] <= grace + 1.5
    assert f"still running {grace} s after SIGUSR1: sending SIGKILL" in \
        Path(run_meta_path(ignores, "log", "runner")).read_text()
    attempts = [next_attempt(victim) for victim in (exits, ignores)]
    assert all(attempts)
    assert set(redis_bed.wait_status(attempts, timeout=30).values()) == {"completed"}
