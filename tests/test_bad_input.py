"""Bad input to gage-submit and gage-worker: one line on stderr, exit 2 (3 for
an unreachable broker), and nothing left in the runs dir that `list` shows.

Every case runs the real commands as subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from support.redis_server import free_port
from support.submit_cli import GageSubmit, assert_one_line_error, write_project
from support.workers import worker_command

WORKER_ERROR = "gage-worker: error: "


def gage_worker(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    return subprocess.run(
        [*worker_command(), *args], env={**base, **(env or {})}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )


def assert_worker_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(WORKER_ERROR), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], proc.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
def gage_submit(tmp_path: Path, project: Path) -> GageSubmit:
    runs = tmp_path / "runs"
    runs.mkdir()
    return GageSubmit(project, {"GAGE_RUNS": str(runs)})


# -- gage-worker usage


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-c", "0"], "0 is not in the range x>=1"),
        (["-c", "-1"], "-1 is not in the range x>=1"),
        (["-c", "abc"], "'abc' is not a valid integer"),
        (["worker", "-l", "bogus"], "'bogus' is not one of"),
        (["bogus"], "no such command 'bogus' (commands: beat, drain, reconcile, worker)"),
        (["beat"], "beat needs --schedule FILE"),
        (["-Q", ""], "-Q/--queues needs queue names"),
        (["-Q", "gage,,gpu"], "invalid queue name ''"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_worker_usage_errors_are_one_line(tmp_path, args, fragment):
    proc = gage_worker(*args, env={"GAGE_RUNS": str(tmp_path)})
    assert_worker_error(proc, fragment)
    assert os.listdir(tmp_path) == []  # the worker never started


@pytest.mark.parametrize("command", [[], ["reconcile"], ["beat", "--schedule", "s.toml"]])
def test_worker_commands_say_a_file_is_not_a_directory(tmp_path, command):
    path = tmp_path / "file"
    path.write_text("")
    proc = gage_worker(*command, "--runs-dir", str(path))
    assert_worker_error(proc, f"runs dir {path} is not a directory")


def test_worker_refuses_a_bad_shared_mode_at_start(tmp_path):
    proc = gage_worker("--runs-dir", str(tmp_path), env={"GAGE_SHARED_MODE": "bogus"})
    assert_worker_error(proc, "GAGE_SHARED_MODE must be 'world' or 'group', not 'bogus'")
    assert os.listdir(tmp_path) == []


# -- an unreachable broker: exit 3


def test_reconcile_exits_3_when_the_broker_is_down(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = gage_worker("reconcile", "--runs-dir", str(tmp_path), "--broker", url)
    assert_worker_error(proc, f"cannot reach the broker at {url}", code=3)


@pytest.mark.system  # a real gage-worker retrying its broker for seconds
def test_worker_without_its_broker_logs_one_line_per_retry_then_exits_3(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    proc = gage_worker("--runs-dir", str(tmp_path), "--broker", url, "--broker-wait", "3.5")
    assert 3.5 <= time.monotonic() - started < 15
    assert proc.returncode == 3, proc.stderr
    *retries, last = proc.stderr.splitlines()
    assert len(retries) >= 2
    for line in retries:
        assert f"gage-worker: cannot reach the broker at {url}: " in line
        assert line.endswith(" s") and "retrying in " in line
    assert last.startswith(f"{WORKER_ERROR}cannot reach the broker at {url}")
    assert last.endswith("gave up after 3.5 s (--broker-wait)")


# -- gage-submit


def test_submit_refuses_a_bad_shared_mode_before_writing(gage_submit, tmp_path):
    gage_submit.env["GAGE_SHARED_MODE"] = "bogus"
    result = gage_submit("train")
    assert_one_line_error(result, "GAGE_SHARED_MODE must be 'world' or 'group', not 'bogus'")
    assert os.listdir(tmp_path / "runs") == []


@pytest.mark.parametrize(
    ("args", "what"),
    [(["--runs-dir", "{file}"], "runs dir"), (["-C", "{file}"], "project dir")],
)
@pytest.mark.parametrize("command", [["train"], ["list"], ["show", "1"]])
def test_submit_says_a_file_is_not_a_directory(gage_submit, tmp_path, args, what, command):
    path = tmp_path / "file"
    path.write_text("")
    result = gage_submit(*command, *(arg.format(file=path) for arg in args))
    assert_one_line_error(result, f"{what} {path} is not a directory")


def test_an_op_without_exec_is_bad_input_and_leaves_nothing(tmp_path):
    project = tmp_path / "noexec"
    project.mkdir()
    (project / "gage.toml").write_text('[train]\ndescription = "nothing to run"\n')
    gage_submit = GageSubmit(project, {})
    result = gage_submit("train")
    assert_one_line_error(result, "operation 'train' has no exec command to run")
    assert sorted(os.listdir(project)) == ["gage.toml"]  # not even .gage/runs
    assert gage_submit("list", "--json").json() == []


# -- a disk that fills up while staging


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A 256 KiB tmpfs mounted for the test (needs root), unmounted after."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_staging_that_fills_the_disk_leaves_no_run(tiny_fs, project):
    # Source code of 5 x 90 KB (Gage copies text files under 100 KB): too big.
    data = [project / f"data{i}.txt" for i in range(5)]
    for path in data:
        path.write_text(f"{uuid.uuid4()}\n" * 2500)
    runs = tiny_fs / "runs"
    runs.mkdir()
    gage_submit = GageSubmit(project, {"GAGE_RUNS": str(runs)})
    result = gage_submit("train")
    line = assert_one_line_error(result, "No space left on device", code=1)
    assert "the partial run was removed" in line
    assert gage_submit("list", "--json").json() == []
    assert os.listdir(runs) == []
    # The disk is free again: the next, smaller run stages.
    for path in data:
        path.unlink()
    gage_submit("train", check=True)
    assert [run["status"] for run in gage_submit("list", "--json").json()] == ["queued"]
