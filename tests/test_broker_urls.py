"""Broker URLs are checked at settings load, and can be read from a file.

A bad URL is one line naming the problem, password redacted, exit 2 from
both real CLIs, with nothing staged or started. `GAGE_BROKER_URL_FILE`
keeps the URL out of the environment; `redis+socket://` and the embedded
`filesystem://` broker keep working.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.redis_server import REDIS_SERVER
from support.submit_cli import GageSubmit, assert_one_line_error, write_project
from support.workers import Bed, worker_command

from gage_queue.errors import SettingsError
from gage_queue.settings import Settings

BAD_URLS = [
    ("redis://", "invalid broker URL 'redis://': no host"),
    ("redis://:secret@", "invalid broker URL 'redis://:***@': no host"),
    ("redis://:secret@h:99999/0", "'redis://:***@h:99999/0': the port must be a number in 1-65535"),
    ("redis://h:abc", "'redis://h:abc': the port must be a number in 1-65535"),
    ("redis://h:0", "'redis://h:0': the port must be a number in 1-65535"),
    ("redis://h:6379/db", "the database must be a number like /0, not 'db'"),
    ("amqp://u:secret@:5672//", "'amqp://u:***@:5672//': no host"),
    ("gopher://h/", "'gopher://h/': expected one of redis://, rediss://, redis+socket://"),
    ("localhost:6379", "'localhost:6379': expected one of"),
    ("redis+socket://", "'redis+socket://': no socket path"),
    ("redis://h:6379/0\nFORGED", "it contains spaces or control characters"),
]
GOOD_URLS = ["redis://h", "redis://:p@s@h:6380/2", "rediss://h:6380/0?ssl_cert_reqs=required",
             "redis+socket:///run/redis.sock", "amqp://u:p@h:5672//", "filesystem://localhost/",
             "redis://[::1]:6379/0"]


@pytest.mark.parametrize("url, message", BAD_URLS)
def test_bad_broker_urls_name_the_problem(url, message):
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"GAGE_BROKER_URL": url})
    assert message in str(e.value)
    assert "secret" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_broker_urls_pass(url):
    assert Settings.from_env({"GAGE_BROKER_URL": url}).broker_url == url


def test_the_settings_repr_hides_the_password():
    assert "secret" not in repr(Settings.from_env({"GAGE_BROKER_URL": "redis://:secret@h/0"}))


def test_broker_url_file(tmp_path):
    url_file = tmp_path / "broker-url"
    url_file.write_text("redis://:secret@h:6379/0\n")
    env = {"GAGE_BROKER_URL_FILE": str(url_file)}
    assert Settings.from_env(env).broker_url == "redis://:secret@h:6379/0"
    cases = [
        ({**env, "GAGE_BROKER_URL": "redis://h"}, "set GAGE_BROKER_URL or GAGE_BROKER_URL_FILE"),
        ({"GAGE_BROKER_URL_FILE": str(tmp_path / "missing")},
         f"cannot read GAGE_BROKER_URL_FILE {tmp_path / 'missing'}: No such file or directory"),
        ({"GAGE_BROKER_URL_FILE": str(tmp_path)}, "cannot read GAGE_BROKER_URL_FILE"),
    ]
    for text in ("", "\n", "redis://h\nredis://g\n", "x" * 5000):
        path = tmp_path / f"bad-{len(cases)}"
        path.write_text(text)
        cases.append(({"GAGE_BROKER_URL_FILE": str(path)}, "must hold one broker URL"))
    url_file.write_text("redis://:secret@h:99999/0")
    cases.append((env, "invalid broker URL 'redis://:***@h:99999/0'"))
    for bad_env, message in cases:
        with pytest.raises(SettingsError) as e:
            Settings.from_env(bad_env)
        assert message in str(e.value) and "secret" not in str(e.value), bad_env


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env.pop("RUNS_DIR", None)
    return {**env, **extra}


@pytest.mark.parametrize("url, message", [BAD_URLS[1], BAD_URLS[2], BAD_URLS[3], BAD_URLS[7],
                                          BAD_URLS[9]])
def test_gage_submit_refuses_a_bad_url_before_staging(tmp_path, url, message):
    project = write_project(tmp_path / "proj")
    before = sorted(project.rglob("*"))
    result = GageSubmit(project, {"GAGE_BROKER_URL": url})("train")
    assert_one_line_error(result, message, code=2)
    assert "secret" not in result.err
    assert sorted(project.rglob("*")) == before  # nothing staged, nothing sent


@pytest.mark.parametrize("url, message", [BAD_URLS[0], BAD_URLS[2], BAD_URLS[7], BAD_URLS[9]])
def test_gage_worker_refuses_a_bad_url_at_start(tmp_path, url, message):
    runs = tmp_path / "runs"
    runs.mkdir()
    for env, args in (({"GAGE_BROKER_URL": url}, []), ({}, ["--broker", url])):
        proc = subprocess.run(
            [*worker_command(), "--runs-dir", str(runs), *args], env=_clean_env(**env),
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("gage-worker: error: ") and proc.stderr.count("\n") == 1
        assert message in proc.stderr and "secret" not in proc.stderr
        assert os.listdir(runs) == []  # no embedded broker made, no worker started


@pytest.fixture
def socket_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server listening on a unix socket only (port 0), stopped by pid."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"no redis-server at {REDIS_SERVER}")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(unix_socket_path=str(sock)).ping():
                    break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start on its socket") from None
                time.sleep(0.02)
        yield sock
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.system
def test_a_worker_with_the_url_in_a_file_over_a_unix_socket(tmp_path, socket_redis):
    """The URL comes from GAGE_BROKER_URL_FILE and is in no process environment."""
    url = f"redis+socket://{socket_redis}"
    url_file = tmp_path / "broker-url"
    url_file.write_text(url + "\n")
    bed = Bed(tmp_path / "bed", broker_url=url)
    try:
        env = {k: v for k, v in bed.worker_env().items() if k != "GAGE_BROKER_URL"}
        worker = bed.start_worker("-c", "1", env={**env, "GAGE_BROKER_URL_FILE": str(url_file)})
        runs = bed.stage_and_submit(2)
        assert bed.wait_status(runs) == {run.id: "completed" for run in runs}
        for proc in [worker.proc.pid, *(p.pid for p in worker.pool())]:
            with open(f"/proc/{proc}/environ", "rb") as f:
                assert str(socket_redis).encode() not in f.read()
    finally:
        bed.close()


@pytest.mark.system
def test_the_embedded_broker_keeps_working_with_an_explicit_url(worker_bed):
    worker_bed.broker_url = "filesystem://localhost/"
    worker_bed.start_worker("-c", "1")
    runs = worker_bed.stage_and_submit(1)
    assert worker_bed.wait_status(runs) == {runs[0].id: "completed"}
