"""A throwaway redis-server for tests: loopback, free port, no persistence.

Started from /usr/bin/redis-server (or REDIS_SERVER) in a tmp dir with
`--save "" --appendonly no`, so a restart loses every message, as a
production Redis without AOF would. Never touches the system Redis.

`RedisServer(workdir, unix_socket=path)` listens on that unix socket only
(no TCP port); its URL is `redis+socket:///abs/path` (kombu takes the
`redis` transport and the socket path from it). Fixture: `redis_unix_server`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process, restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, unix_socket: Path | None = None,
                 password: str | None = None):
        self.workdir = workdir
        self.password = password
        self.unix_socket = unix_socket
        self.port = 0 if unix_socket else (port or free_port())
        self.proc: subprocess.Popen | None = None
        if unix_socket and len(str(unix_socket)) > UNIX_PATH_MAX:
            raise ValueError(f"unix socket path longer than {UNIX_PATH_MAX} bytes: {unix_socket}")

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"redis+socket://{self.unix_socket}"
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.unix_socket:
            return redis.Redis(unix_socket_path=str(self.unix_socket), socket_timeout=5)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                           password=self.password)

    def _listen_args(self) -> list[str]:
        if self.unix_socket:
            return ["--port", "0", "--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        return ["--port", str(self.port), "--bind", "127.0.0.1"]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER, *self._listen_args(),
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--logfile", str(self.workdir / "redis.log"), "--daemonize", "no",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    where = self.unix_socket or f"port {self.port}"
                    raise RuntimeError(f"redis-server did not start on {where}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server by pid; its data is gone (no persistence)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server on a free loopback port, stopped afterwards."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"no redis-server at {REDIS_SERVER}")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_unix_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server on a unix socket in the test's tmp dir, stopped afterwards."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"no redis-server at {REDIS_SERVER}")
    server = RedisServer(tmp_path / "redis", unix_socket=tmp_path / "redis" / "redis.sock")
    server.start()
    try:
        yield server
    finally:
        server.stop()
