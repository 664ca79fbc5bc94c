"""gage_worker without worker processes: settings, run environment, CLI.

The lock, the run state and reconcile are in test_run_state.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from support.records import commit, submitted

from gage_queue.errors import SettingsError
from gage_queue.settings import Settings
from gage_queue.states import RunState
from gage_runs.meta import write_timestamp
from gage_worker.cli import main
from gage_worker.runenv import run_env

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
    env = run_env("redis://:s3cret@h/0", environ)
    assert env == {"PATH": "/bin", "HOME": "/h", "CUDA_VISIBLE_DEVICES": "0,1,2"}


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
    lost = submitted(worker_bed.stage())
    write_timestamp(lost, "started")
    commit(lost, state=RunState.RUNNING, host=socket.gethostname())
    env = worker_bed.worker_env()
    result = CliRunner().invoke(main, ["reconcile", "--runs-dir", str(worker_bed.runs_dir)],
                                env=env)
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{lost.id[:8]} ({lost.name}): terminated (its keeper on {socket.gethostname()} died)\n")
    again = CliRunner().invoke(main, ["reconcile"], env=env)
    assert again.output == "nothing to do\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_worker_refuses_unwritable_runs_dir(tmp_path):
    runs = tmp_path / "ro"
    runs.mkdir(mode=0o555)
    result = CliRunner().invoke(main, ["--runs-dir", str(runs)])
    assert result.exit_code == 2
    assert f"runs dir {runs} is not writable" in result.output
