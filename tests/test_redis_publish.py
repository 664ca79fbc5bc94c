"""Sends to Redis without kombu (`gage_queue.broker.redis_publish`): what they store is
kombu's, and a submit loads nothing of kombu, redis-py or Celery.

The Redis tests compare every key a session's send leaves with those kombu's
publish leaves, on a real redis-server (system tier). The import tests run a
real `gage-submit` in a fresh interpreter, on the embedded broker and on a
stand-in Redis (a thread answering RESP2), and list the modules it loaded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gage_queue.broker.messages import EXEC_TASK, FINALIZE_TASK, broker_connection, publish_task
from gage_queue.broker.redis_publish import RedisTarget, target
from gage_queue.broker.send import BrokerSession
from gage_queue.errors import BrokerUnavailable
from gage_queue.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RUN_ID = "01234567-89ab-4def-8123-456789abcdef"

# -- which URLs are ours, read as kombu reads them


@pytest.mark.parametrize("url, expected", [
    ("redis://h", RedisTarget(host="h")),
    ("redis://h:6380/2", RedisTarget(host="h", port=6380, db=2)),
    ("redis://:p@s@h:6380/2", RedisTarget(host="h", port=6380, db=2, password="p@s")),
    ("redis://u:p%40w@h/", RedisTarget(host="h", username="u", password="p@w")),
    ("redis://[::1]:6379/0", RedisTarget(host="::1")),
    ("redis+socket:///run/redis.sock", RedisTarget(path="/run/redis.sock")),
    ("redis+socket:///run/redis.sock?virtual_host=3", RedisTarget(path="/run/redis.sock", db=3)),
    ("redis+socket://:pw@/run/redis.sock", RedisTarget(path="/run/redis.sock", password="pw")),
])
def test_plain_redis_urls_are_sent_without_kombu(url, expected):
    assert target(url) == expected


@pytest.mark.parametrize("url", [
    "rediss://h:6380/0?ssl_cert_reqs=required",  # TLS and its options
    "redis://h/0?socket_timeout=5",  # options kombu hands to redis-py
    "redis+socket:///run/redis.sock?socket_timeout=5",
    "redis://u@h/0",  # a user without a password
    "redis://h//", "redis://h/0/",  # databases kombu reads its own way
    "amqp://u:p@h:5672//", "filesystem://localhost/",
])
def test_other_urls_are_left_to_kombu(url):
    assert target(url) is None


# -- what a send stores, next to what kombu stores


def _stored(server: Any, db: int) -> dict[bytes, Any]:
    """Every key of database `db` with its value; message ids blanked."""
    import redis

    if server.unix_socket:
        client = redis.Redis(unix_socket_path=str(server.unix_socket), db=db, socket_timeout=5)
    else:
        client = redis.Redis(port=server.port, db=db, password=server.password, socket_timeout=5)
    stored: dict[bytes, Any] = {}
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"set":
            stored[key] = sorted(client.smembers(key))
        elif kind == b"list":
            stored[key] = [_blanked(item) for item in client.lrange(key, 0, -1)]
        else:
            stored[key] = kind
    return stored


def _blanked(item: bytes) -> bytes:
    message = json.loads(item)
    for value in (message["headers"]["id"], message["properties"]["delivery_tag"]):
        item = item.replace(value.encode(), b"<id>")
    return item


def _kombu_size(settings: Settings, queue: str) -> int:
    with broker_connection(settings) as conn:
        channel = conn.channel()
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except conn.channel_errors:
            return 0
        finally:
            channel.close()


def _database(url: str, db: int) -> str:
    if url.startswith("redis+socket:"):
        return f"{url}?virtual_host={db}"
    return f"{url.rpartition('/')[0]}/{db}"


@pytest.mark.system
@pytest.mark.parametrize("listening", ["tcp", "unix"])
def test_a_session_stores_byte_for_byte_what_kombu_stores(listening, request):
    server = request.getfixturevalue("redis_server" if listening == "tcp" else "redis_unix_server")
    by_kombu = Settings(broker_url=_database(server.url, 1))
    by_session = Settings(broker_url=_database(server.url, 2))
    with broker_connection(by_kombu) as conn:
        for task, queue in ((EXEC_TASK, "gage"), (FINALIZE_TASK, "gage-finalize"),
                            (EXEC_TASK, "gage")):
            publish_task(conn, task, [RUN_ID], queue)
    with BrokerSession(by_session) as session:
        assert session._redis is not None  # sent without kombu
        for task, queue in ((EXEC_TASK, "gage"), (FINALIZE_TASK, "gage-finalize"),
                            (EXEC_TASK, "gage")):
            session.send(task, RUN_ID, queue)
        sizes = [session.queue_size(queue) for queue in ("gage", "gage-finalize", "other")]

    stored = _stored(server, 2)
    assert stored == _stored(server, 1)
    assert set(stored) == {b"gage", b"gage-finalize", b"_kombu.binding.gage",
                           b"_kombu.binding.gage-finalize", b"_kombu.binding_permanent.gage",
                           b"_kombu.binding_permanent.gage-finalize"}
    assert sizes == [_kombu_size(by_kombu, q) for q in ("gage", "gage-finalize", "other")]
    assert sizes == [2, 1, 0]


@pytest.mark.system
def test_a_password_is_sent_and_a_wrong_one_is_the_broker_unavailable(tmp_path):
    from support.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis", password="s3cret")
    server.start()
    try:
        with BrokerSession(Settings(broker_url=server.url)) as session:
            session.send(EXEC_TASK, RUN_ID, "gage")
            assert session.queue_size("gage") == 1
        for url in (server.url.replace("s3cret", "wrong"), server.url.replace(":s3cret@", "")):
            with pytest.raises(BrokerUnavailable) as raised, BrokerSession(
                    Settings(broker_url=url)):
                pass
            message = str(raised.value)
            assert message.startswith("cannot reach the broker at redis://")
            assert "WRONGPASS" in message or "NOAUTH" in message, message
            assert "wrong" not in message
    finally:
        server.stop()


# -- a stand-in Redis, and what a submit loads


class StandInRedis:
    """A RESP2 server in a thread: `+PONG`, `+OK` or `:1` to every command, each recorded;
    no reply to the commands named in `silent`."""

    def __init__(self) -> None:
        self.commands: list[list[bytes]] = []
        self.silent: set[bytes] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as requests:
            while header := requests.readline():
                args = []
                for _ in range(int(header[1:])):
                    size = int(requests.readline()[1:])
                    args.append(requests.read(size + 2)[:-2])
                self.commands.append(args)
                name = args[0].upper()
                if name in self.silent:
                    continue
                conn.sendall(b"+PONG\r\n" if name == b"PING" else
                             b"+OK\r\n" if name in (b"AUTH", b"SELECT") else b":1\r\n")

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def stand_in_redis() -> Iterator[StandInRedis]:
    server = StandInRedis()
    yield server
    server.close()


def test_a_reply_that_does_not_come_is_tried_once_more_then_the_broker_unavailable(
        stand_in_redis, monkeypatch):
    from gage_queue.broker import redis_publish

    monkeypatch.setattr(redis_publish, "REPLY_TIMEOUT", 0.2)
    settings = Settings(broker_url=stand_in_redis.url)
    stand_in_redis.silent.add(b"LPUSH")
    with BrokerSession(settings) as session, pytest.raises(BrokerUnavailable) as raised:
        session.send(EXEC_TASK, RUN_ID, "gage")
    assert str(raised.value) == f"cannot reach the broker at {stand_in_redis.url}: timed out"
    names = [c[0] for c in stand_in_redis.commands]
    assert names == [b"PING", b"SADD", b"SADD", b"LPUSH"] * 2  # the second on a fresh connection

    stand_in_redis.silent.clear()  # the broker answers again: a new session connects anew
    with BrokerSession(settings) as session:
        session.send(EXEC_TASK, RUN_ID, "gage")
        assert session.queue_size("gage") == 4  # 1 for each of the 4 lists of priorities
    assert [c[0] for c in stand_in_redis.commands[8:]] == [b"PING", b"SADD", b"SADD", b"LPUSH",
                                                           b"LLEN", b"LLEN", b"LLEN", b"LLEN"]


SUBMIT = """\
import json, sys
from gage_submit.cli import run
code = run(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def _submit_loading(tmp_path: Path, broker: str | None) -> set[str]:
    """The modules a fresh `gage-submit say x=1` loaded, to its exit."""
    project = tmp_path / "project"
    if not project.exists():
        project.mkdir()
        (project / "gage.toml").write_text('[say]\nexec = "python3 say.py"\nconfig = "say.py"\n')
        (project / "say.py").write_text("x = 0\nprint(x)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["GAGE_RUNS"] = str(tmp_path / "runs")
    (tmp_path / "runs").mkdir(exist_ok=True)
    if broker:
        env["GAGE_BROKER_URL"] = broker
    report = tmp_path / "loaded.json"
    proc = subprocess.run([sys.executable, "-c", SUBMIT, str(report), "say", "x=1"], env=env,
                          cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(report.read_text())
    assert loaded["code"] == 0, proc.stderr
    assert proc.stdout.startswith("queued "), proc.stdout
    return set(loaded["modules"])


WORKER_STACK = ("celery", "kombu", "billiard", "redis", "amqp", "vine", "asyncio")


def test_a_submit_loads_only_what_its_broker_needs(tmp_path, stand_in_redis):
    """Embedded: no kombu, redis-py, Celery or asyncio, and no socket; Redis: the same modules
    and its publisher (with socket, and urllib.parse for the URL)."""
    embedded = _submit_loading(tmp_path, None)
    assert not sorted(m for m in embedded if m.split(".")[0] in WORKER_STACK)
    assert "gage_queue.broker.redis_publish" not in embedded

    on_redis = _submit_loading(tmp_path, stand_in_redis.url)
    assert "socket" not in embedded
    assert on_redis - embedded == {  # the publisher, its sockets, and the URL parser
        "gage_queue.broker.redis_publish", "socket", "_socket", "selectors", "select", "array",
        "urllib", "urllib.parse", "ipaddress"}
    assert [c[0] for c in stand_in_redis.commands] == [b"PING", b"SADD", b"SADD", b"LPUSH"]
    assert stand_in_redis.commands[-1][1] == b"gage"
