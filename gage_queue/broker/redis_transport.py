"""kombu's Redis transport, dropping list items that are not kombu messages.

Anyone who can write the broker's Redis can push a raw item onto a queue's
list (`LPUSH gage garbage`). kombu decodes the item and builds its message
straight after BRPOP pops it, before any Celery or gage-queue code: an item
that is not JSON, or not kombu's envelope, or whose body cannot be decoded
raises there, and the worker exits ("Unrecoverable error"). Here the popped
item is checked first (`envelope_problem`, as strict as kombu's own decoding
and a little stricter); one that fails is logged as one escaped line and
dropped (it is gone: popped and never added to the unacked set), and the
worker goes on. An item that passes is a kombu message, and the inbox
(`gage_worker.consumer_guard`) checks what Celery would act on.

Selected by `install()` (called by `broker.broker_transport` for Redis
URLs), which points kombu's own `redis` and `rediss` aliases at this
transport: passing the class as `transport=` instead would lose what kombu
reads from the scheme (TLS for `rediss://`; for `redis+socket://` kombu
takes the transport name from the URL and ignores the one given).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import redis
from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger(__name__)

ALIASES = ("redis", "rediss")  # `redis+socket://` resolves through `redis`
MAX_ITEM = 64 * 1024  # bytes; a real message is about 1 KiB
_SHOWN = 80  # characters of a dropped item shown in the log


def envelope_problem(item: bytes) -> str | None:
    """Why kombu could not make a message of this list item, or None if it can."""
    if len(item) > MAX_ITEM:
        return f"longer than {MAX_ITEM} bytes"
    try:
        envelope = loads(bytes_to_str(item))
    except Exception as e:  # any failure to decode a stranger's bytes (even RecursionError)
        return f"not JSON ({type(e).__name__})"
    if not isinstance(envelope, dict):
        return "not a kombu envelope (not a JSON object)"
    properties = envelope.get("properties")
    if not isinstance(properties, dict):
        return "not a kombu envelope (no properties)"
    if not isinstance(properties.get("delivery_tag"), str):
        return "no delivery tag"
    info = properties.get("delivery_info")
    if not (isinstance(info, dict) and all(isinstance(info.get(key), str)
                                           for key in ("exchange", "routing_key"))):
        return "no delivery info"
    priority = properties.get("priority")
    if priority is not None and (type(priority) is not int or not 0 <= priority <= 255):
        return "a bad priority"
    if not isinstance(envelope.get("headers") or {}, dict):
        return "headers are not an object"
    if not all(isinstance(envelope.get(key) or "", str)
               for key in ("content-type", "content-encoding")):
        return "a content type or encoding that is not a string"
    return _body_problem(envelope.get("body"), properties.get("body_encoding"))


def _body_problem(body: Any, encoding: Any) -> str | None:
    if body is not None and not isinstance(body, str):
        return "a body that is not a string"
    if encoding is None or (isinstance(encoding, str) and encoding.lower() == "utf-8"):
        return None
    if encoding != "base64":
        return f"body encoding {_shown(encoding)} is not base64"
    try:
        base64.b64decode(body or "", validate=True)
    except (binascii.Error, ValueError):
        return "a body that is not base64"
    return None


def _shown(value: object) -> str:
    """`value` for a log line: a repr (no raw newline survives), cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _is_message(queue: bytes, item: bytes) -> bool:
    """True if the item is a kombu message; if not, logged as dropped."""
    problem = envelope_problem(item)
    if problem is not None:
        log.error("dropped an item of Redis list %s: %s: %s",
                  _shown(bytes_to_str(queue)), problem, _shown(item))
    return problem is None


class GuardedRedis(redis.Redis):
    """A Redis client whose BRPOP replies (how kombu consumes) hold only kombu messages."""

    def parse_response(self, connection: Any, command_name: str | bytes, **options: Any) -> Any:
        reply = super().parse_response(connection, command_name, **options)
        if command_name == "BRPOP" and reply:
            queue, item = reply
            return reply if _is_message(queue, item) else None  # None: kombu's "Empty"
        return reply


class Channel(kombu_redis.Channel):
    def _get_client(self) -> Any:
        client = super()._get_client()
        return GuardedRedis if client is redis.Redis else client  # a key prefix: kombu's own


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make kombu's `redis` and `rediss` URLs use this transport in this process."""
    path = f"{__name__}:Transport"
    for alias in ALIASES:
        kombu_transport.TRANSPORT_ALIASES[alias] = path
        kombu_transport._transport_cache.pop(alias, None)  # resolved before: resolve again
