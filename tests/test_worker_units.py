"""gage_worker without worker processes: settings, lock, state, reconcile, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from gage_runs.meta import meta_exit_code, write_timestamp
from gage_worker.cli import main
from gage_worker.errors import SettingsError
from gage_worker.lock import is_locked, lock_path, try_lock
from gage_worker.queue_meta import queue_path, write_cancel, write_exit, write_submitted
from gage_worker.recovery import reconcile
from gage_worker.settings import Settings
from gage_worker.state import queue_state, queue_status
from gage_worker.supervisor import run_env

HOLD_LOCK = """\
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(60)
"""

TRY_LOCK = """\
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    print("busy")
else:
    print("free")
"""


@pytest.fixture
def holder(worker_bed):
    """Start a process that holds a run's lock, as a worker on any host would."""
    procs: list[subprocess.Popen] = []

    def hold(run) -> subprocess.Popen:
        os.makedirs(os.path.dirname(lock_path(run)), exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, lock_path(run)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "locked"
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def _other_process_sees(run) -> str:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, lock_path(run)],
                          capture_output=True, text=True, check=True).stdout.strip()


def _age(run, name: str, seconds: float) -> None:
    path = queue_path(run, name)
    old = time.time() - seconds
    os.utime(path, (old, old))
    if name == "enqueued":
        with open(path, "w") as f:
            f.write(str(int(old * 1_000_000)))


def _queued(bed, *, age: float = 0.0):
    run = bed.stage()
    write_submitted(run, queue="gage", time_limit=None, schedule=None)
    with open(queue_path(run, "enqueued"), "w") as f:
        f.write(str(int((time.time() - age) * 1_000_000)))
    return run


def _embedded_messages(bed, queue: str) -> list[str]:
    folder = bed.runs_dir / ".gage-queue" / "broker" / "messages"
    return [n for n in os.listdir(folder) if n.endswith(f".{queue}.msg")]


# -- settings and environment


def test_settings_from_env():
    settings = Settings.from_env({
        "GAGE_RUNS": "runs", "GAGE_BROKER_URL": "redis://h:6379/1", "GAGE_QUEUE": "cpu",
        "GAGE_VISIBILITY_TIMEOUT": "7200", "GAGE_RECONCILE_INTERVAL": "5",
        "GAGE_RECONCILE_THRESHOLD": "30", "GAGE_CANCEL_GRACE": "2.5", "GAGE_GPUS": "0, 1",
    })
    assert settings.runs_dir == os.path.abspath("runs")
    assert (settings.broker_url, settings.queue, settings.finalize_queue) == (
        "redis://h:6379/1", "cpu", "gage-finalize")
    assert (settings.visibility_timeout, settings.reconcile_interval) == (7200, 5)
    assert (settings.reconcile_threshold, settings.cancel_grace) == (30, 2.5)
    assert settings.gpus == ("0", "1")
    assert Settings.from_env({"RUNS_DIR": "/r"}).runs_dir == "/r"
    assert Settings.from_env({}).broker_url is None


@pytest.mark.parametrize("env, message", [
    ({"GAGE_VISIBILITY_TIMEOUT": "soon"},
     "GAGE_VISIBILITY_TIMEOUT must be a positive number of seconds, not 'soon'"),
    ({"GAGE_RECONCILE_INTERVAL": "0"},
     "GAGE_RECONCILE_INTERVAL must be a positive number of seconds, not '0'"),
    ({"GAGE_BROKER_URL": "localhost:6379"}, "invalid broker URL 'localhost:6379'"),
    ({"GAGE_BROKER_URL": "http://u:secret@h/"}, "invalid broker URL 'http://u:***@h/'"),
    ({"GAGE_QUEUE": "a queue"}, "invalid queue name 'a queue'"),
    ({"GAGE_GPUS": "0,0"}, "invalid GPU list '0,0'"),
])
def test_bad_settings_are_one_line_errors(env, message):
    with pytest.raises(SettingsError) as e:
        Settings.from_env(env)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_run_env_drops_worker_settings_and_secrets():
    environ = {
        "PATH": "/bin", "HOME": "/h", "GAGE_BROKER_URL": "redis://:s3cret@h/0",
        "GAGE_RUNS": "/runs", "CELERY_BROKER_URL": "x", "BROKER_URL": "y",
        "MY_COPY": "redis://:s3cret@h/0", "CUDA_VISIBLE_DEVICES": "0,1,2",
    }
    env = run_env("redis://:s3cret@h/0", None, environ)
    assert env == {"PATH": "/bin", "HOME": "/h", "CUDA_VISIBLE_DEVICES": "0,1,2"}
    assert run_env(None, "1", environ)["CUDA_VISIBLE_DEVICES"] == "1"


# -- the run lock


def test_lock_is_exclusive_across_processes(worker_bed, holder):
    run = worker_bed.stage()
    assert not is_locked(run)
    proc = holder(run)
    assert is_locked(run)
    assert try_lock(run) is None
    proc.kill()
    proc.wait()
    assert not is_locked(run)
    with try_lock(run) as lock:
        assert lock is not None
        assert is_locked(run)
        assert try_lock(run) is None  # not even from this process
        assert _other_process_sees(run) == "busy"  # probing did not release it
    assert _other_process_sees(run) == "free"
    fresh = worker_bed.stage()
    try_lock(fresh).release()
    assert oct(os.stat(lock_path(fresh)).st_mode & 0o777) == oct(0o666)  # any user may lock


# -- state


def test_queue_states(worker_bed, holder):
    plain = worker_bed.stage()
    assert queue_status(plain) == "staged"  # not submitted: Gage's status

    queued = _queued(worker_bed)
    assert queue_status(queued) == "queued"

    running = _queued(worker_bed)
    holder(running)
    write_timestamp(running, "started")
    with open(queue_path(running, "heartbeat"), "w") as f:
        f.write('{"host": "gpu7", "pid": 1, "pgid": 1, "time": 0}')
    assert queue_state(running).status == "running"
    assert queue_state(running).host == "gpu7"

    lost = _queued(worker_bed)
    write_timestamp(lost, "started")
    assert queue_status(lost) == "lost"

    executed = _queued(worker_bed)
    write_timestamp(executed, "started")
    write_exit(executed, 3)
    assert queue_status(executed) == "finalizing"


# -- reconcile


def test_reconcile(worker_bed, holder):
    settings = worker_bed.settings()  # embedded broker, threshold 2 s
    plain = worker_bed.stage()
    plain_started = worker_bed.stage()
    write_timestamp(plain_started, "started")  # e.g. `gage run` in progress
    fresh = _queued(worker_bed)
    stale = _queued(worker_bed, age=60)
    cancelled = _queued(worker_bed)
    write_cancel(cancelled)
    lost = _queued(worker_bed)
    write_timestamp(lost, "started")
    running = _queued(worker_bed)
    write_timestamp(running, "started")
    holder(running)
    executed = _queued(worker_bed)
    write_timestamp(executed, "started")
    write_exit(executed, 0)
    _age(executed, "exit", 60)

    done = reconcile(settings)

    assert sorted(line.split(": ", 1)[1] for line in done) == [
        "finalized as terminated (exit -15)",
        "finalized as terminated (exit -9)",
        "re-sent to queue gage",
        "sent finalize to queue gage-finalize",
    ]
    assert queue_status(plain) == "staged" and queue_status(plain_started) == "staged"
    assert queue_status(fresh) == queue_status(stale) == "queued"
    assert meta_exit_code(cancelled) == -15 and meta_exit_code(lost) == -9
    assert queue_status(running) == "running"
    assert queue_status(executed) == "finalizing"
    assert len(_embedded_messages(worker_bed, "gage")) == 1
    assert len(_embedded_messages(worker_bed, "gage-finalize")) == 1

    # Later: one message for two queued runs. Only the run waiting longest
    # (`fresh`, whose message is the missing one) is sent, and only once.
    _age(fresh, "enqueued", 120)
    _age(stale, "enqueued", 60)
    assert reconcile(settings) == [f"{fresh.id[:8]} ({fresh.name}): re-sent to queue gage"]
    assert reconcile(settings) == []
    assert len(_embedded_messages(worker_bed, "gage")) == 2
    assert len(_embedded_messages(worker_bed, "gage-finalize")) == 1


# -- the command line


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    runner = CliRunner()
    cases = [
        (["--runs-dir", str(tmp_path / "missing")], "runs dir"),
        (["worker", "--runs-dir", str(tmp_path), "--broker", "nope"], "invalid broker URL"),
        (["--runs-dir", str(tmp_path), "--gpus", "0,1", "-c", "3"], "conflicts with --gpus"),
        (["--runs-dir", str(tmp_path), "-Q", "bad queue"], "invalid queue name"),
        (["reconcile", "--runs-dir", str(tmp_path / "missing")], "does not exist"),
        (["reconcile", "--runs-dir", str(tmp_path / "file")], "is not a directory"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("gage-worker: error: "), result.output
        assert message in result.output and result.output.count("\n") == 1


def test_cli_in_a_real_process(tmp_path):
    (tmp_path / "file").write_text("")
    proc = subprocess.run(
        [sys.executable, "-c", "from gage_worker.cli import main; main()",
         "--runs-dir", str(tmp_path / "file")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"gage-worker: error: runs dir {tmp_path / 'file'} is not a directory\n"
    assert not (tmp_path / "file.gage-queue").exists()


def test_cli_reconcile_prints_what_it_did(worker_bed):
    lost = _queued(worker_bed)
    write_timestamp(lost, "started")
    env = worker_bed.worker_env()
    result = CliRunner().invoke(main, ["reconcile", "--runs-dir", str(worker_bed.runs_dir)],
                                env=env)
    assert result.exit_code == 0, result.output
    assert result.output == f"{lost.id[:8]} ({lost.name}): finalized as terminated (exit -9)\n"
    again = CliRunner().invoke(main, ["reconcile"], env=env)
    assert again.output == "nothing to do\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_worker_refuses_unwritable_runs_dir(tmp_path):
    runs = tmp_path / "ro"
    runs.mkdir(mode=0o555)
    result = CliRunner().invoke(main, ["--runs-dir", str(runs)])
    assert result.exit_code == 2
    assert f"runs dir {runs} is not writable" in result.output
