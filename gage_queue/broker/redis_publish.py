"""Task messages pushed to Redis as kombu's Redis transport pushes them, without kombu or redis-py.

Why not through kombu: a submitter sends a message or a few and exits,
and kombu's Redis transport would cost it more than all the rest of a
submit. `kombu.connection` imports in about 130 ms on a 2-core machine,
and the transport imports redis-py, whose package loads its asyncio,
cluster and sentinel clients whatever one uses (`import redis`, redis-py
8: about 260 ms there; there is no lighter entry to its plain client).
A publish is three commands on a socket; here they are written in RESP2,
the Redis protocol (a command is an array of bulk strings; a reply is a
status line, an error line, an integer or a bulk string), which every
Redis since 1.2 and every Redis-compatible server (Valkey, KeyDB) speaks.

What is stored is what `messages.publish_task` stores through kombu's
Redis transport (`kombu/transport/redis.py`, `Channel._queue_bind` and
`Channel._put`), in one round trip:

- `SADD _kombu.binding.<queue> <queue>\\x06\\x16\\x06\\x16<queue>`, and the
  same member in `_kombu.binding_permanent.<queue>` (kombu 5.7 adds it so
  its sweep of expiring bindings keeps this one): the queue declared on
  its own direct exchange, as `Queue.declare` binds it, so a Celery
  `send_task` to that exchange finds the queue before any worker
  declared it;
- `LPUSH <queue> <envelope>`: the JSON envelope of `messages.task_envelope`
  (the virtual transport's: body in base64, delivery info, delivery tag)
  on the list of priority 0, which kombu names as the queue.

`queue_size` is kombu's count of a queue (`Channel._size`): the lengths
of the lists of its priority steps. tests/test_redis_publish.py compares
every key and value, and the counts, with kombu's on a real Redis, so a
kombu that stores anything else fails there first.

Only the URLs this reads exactly as kombu does are handled (`target`):
`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` and
`redis+socket:///PATH[?virtual_host=DB]`. Anything else is left to kombu
(None): `rediss://` (TLS and its options), and query options, which kombu
hands to redis-py. Replies time out after `REPLY_TIMEOUT` seconds (kombu
waits forever); every error is a `ConnectionError` (an error reply:
`RedisError`), which `send.BrokerSession` reports as the broker unreachable.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORT = 6379
SEP = "\x06\x16"  # kombu's separator of a binding's fields and of a priority's list name
BINDING = "_kombu.binding.{}"
BINDING_PERMANENT = "_kombu.binding_permanent.{}"
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's; priority 0 is the queue's own list
REPLY_TIMEOUT = 10.0
_DB = re.compile(r"/?([0-9]+)?\Z")


class RedisError(ConnectionError):
    """An error reply from Redis, or a reply that is not RESP2."""


@dataclass(frozen=True)
class RedisTarget:
    """Where and as whom to connect: a TCP address or a unix socket, a database."""

    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None  # a unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None


def target(url: str) -> RedisTarget | None:
    """The Redis `url` points to, if this module reads it as kombu does; else None."""
    scheme, _, _ = url.partition("://")
    if scheme not in ("redis", "redis+socket"):
        return None
    parts = urlsplit(url)
    if parts.fragment or ";" in parts.path:
        return None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    username = unquote(parts.username or "") or None
    password = unquote(parts.password or "") or None
    if username and not password:
        return None  # redis-py's AUTH of a user without a password: kombu's to send
    if scheme == "redis+socket":
        path = parts.path
        if parts.hostname or parts.port or set(query) - {"virtual_host"} or len(path) < 2:
            return None
        db = _db(query.get("virtual_host", ""))
        if db is None:
            return None
        return RedisTarget(path=unquote(path), db=db, username=username, password=password)
    db = _db(unquote(parts.path))
    if query or db is None or not parts.hostname:
        return None
    return RedisTarget(host=parts.hostname, port=parts.port or DEFAULT_PORT, db=db,
                       username=username, password=password)


def _db(text: str) -> int | None:
    """kombu's database of a URL's path (`/2`; none: 0), or None if kombu would refuse it."""
    match = _DB.match(text)
    if not match:
        return None
    return int(match[1] or 0)


def command(*args: str | bytes) -> bytes:
    """A command as RESP2 sends it: an array of bulk strings (str as UTF-8)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def priority_list(queue: str, priority: int) -> str:
    """The list kombu keeps a queue's messages of `priority` in (a step of PRIORITY_STEPS)."""
    return f"{queue}{SEP}{priority}" if priority else queue


class RedisConnection:
    """One connection to Redis, authenticated, on its database, answering PING.

    Raises OSError (connect, send, timeouts) or a ConnectionError (an error
    reply, a closed connection) from every method, the constructor too.
    """

    def __init__(self, where: RedisTarget, connect_timeout: float):
        if where.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(connect_timeout)
                sock.connect(where.path)
            except BaseException:
                sock.close()
                raise
        else:
            host = where.host.encode("ascii" if where.host.isascii() else "idna")  # no idna import
            sock = socket.create_connection((host, where.port), timeout=connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._replies = sock.makefile("rb")
        try:
            sock.settimeout(REPLY_TIMEOUT)
            hello: list[Sequence[str]] = []
            if where.password is not None:
                hello.append(("AUTH", *filter(None, [where.username]), where.password))
            if where.db:
                hello.append(("SELECT", str(where.db)))
            hello.append(("PING",))
            self.run(hello)
        except BaseException:
            self.close()
            raise

    def publish(self, queue: str, message: bytes) -> None:
        """Declare `queue` on its own exchange and push `message` onto it, as kombu does."""
        binding = SEP.join([queue, "", queue])
        self.run([
            ("SADD", BINDING.format(queue), binding),
            ("SADD", BINDING_PERMANENT.format(queue), binding),
            ("LPUSH", priority_list(queue, 0), message),
        ])

    def queue_size(self, queue: str) -> int:
        """The messages waiting in `queue`, every priority: kombu's count of it."""
        return sum(self.run([("LLEN", priority_list(queue, p)) for p in PRIORITY_STEPS]))

    def run(self, commands: Sequence[Sequence[str | bytes]]) -> list[Any]:
        """Send the commands at once and read their replies; RedisError for the first error.

        Anything that stops it part-way (a timeout, Ctrl-C) closes the connection, as
        redis-py does: a reply left unread would be taken for the next command's.
        """
        try:
            self._sock.sendall(b"".join(command(*args) for args in commands))
            replies = [self._reply() for _ in commands]  # all of them: the next call starts clean
        except BaseException:
            self.close()
            raise
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return replies

    def _reply(self) -> object:
        line = self._replies.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("the connection was closed" if not line else "a truncated reply")
        try:
            return self._parse(line[:1], line[1:-2])
        except ValueError:
            raise RedisError(f"not a RESP2 reply: {line[:40]!r}") from None

    def _parse(self, kind: bytes, rest: bytes) -> object:
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._replies.read(size + 2)
            if len(data) != size + 2:
                raise RedisError("the connection was closed")
            return data[:-2]
        if kind == b"*":
            return [self._reply() for _ in range(max(int(rest), 0))]
        raise ValueError(kind)

    def close(self) -> None:
        for closing in (self._replies, self._sock):
            with contextlib.suppress(OSError):
                closing.close()
