"""The broker URL and transport options, and the embedded default broker.

Embedded default (no `GAGE_BROKER_URL`): kombu's filesystem transport as
`embedded.Transport` makes it (inotify wake-up, claims acked on disk), with
its folders in the runs dir under `.gage-queue/broker/` (Gage lists only
`*.meta` entries, so the folder is invisible to it). Nothing to install or
start: a submitter and a worker on one machine share it through the runs
dir they already share, and a submit with no worker running leaves its
message there. On one machine it runs about as fast as Redis.

Its limits: use it on one machine. Over NFS renames and flock still hold,
but other hosts' messages wake no one (no inotify events cross NFS), so a
worker sees them on its re-scan every `FILESYSTEM_POLL` seconds, and
broadcast (`celery inspect`/`control`) reaches only processes on hosts
that see the same folder. Use Redis for several hosts.

Measured against it (bench/throughput.py, 200 trivial runs, 2 slots): a
Valkey server from a PyPI wheel on a unix socket with AOF, as fast but a
process that someone (which worker? a submitter when none runs?) must
start, adopt and stop, a socket path that must stay under 108 bytes, and
a binary for four platforms only; and kombu's SQLAlchemy transport on
SQLite, which polls (2.5x slower, 48 ms dispatch) and costs every submit
an SQLAlchemy import.

Redis and RabbitMQ: the URL is passed to kombu unchanged. Redis URLs
(`redis://`, `rediss://`, `redis+socket://`) get kombu's Redis transport
as `redis_transport` guards it: a raw item pushed onto a queue's list that
is not a kombu message is dropped and logged instead of crashing the
worker. A submitter sends to `redis://` and `redis+socket://` without
kombu (`redis_publish`: the same keys, much less to import). For Redis the
visibility timeout (how long an unacked message stays invisible before
Redis redelivers it) is set in the transport options, and the periodic
restore of unacked messages is made as frequent as the timeout needs. For
RabbitMQ set `consumer_timeout` in rabbitmq.conf above the longest run
(its default, 30 minutes, closes the channel of a longer late-ack task).
"""

from __future__ import annotations

import os
from typing import Any

from gage_queue.layout import broker_dir
from gage_queue.settings import Settings
from gage_runs.fsmode import make_dirs

EMBEDDED_URL = "filesystem://localhost/"
EMBEDDED_TRANSPORT = "gage_queue.broker.embedded:Transport"
CONNECT_TIMEOUT = 3.0
FILESYSTEM_POLL = 0.5


def broker_url(settings: Settings) -> str:
    return settings.broker_url or EMBEDDED_URL


def is_embedded(settings: Settings) -> bool:
    return broker_url(settings).startswith("filesystem:")


REDIS_SCHEMES = ("redis:", "rediss:", "redis+socket:")


def broker_transport(settings: Settings) -> str | None:
    """The kombu transport class for the broker URL (None: the one its scheme names).

    For Redis the scheme's name stays, and `redis_transport.install()` points
    kombu's Redis aliases at the guarded transport (see there why).
    """
    if is_embedded(settings):
        return EMBEDDED_TRANSPORT
    if broker_url(settings).lower().startswith(REDIS_SCHEMES):
        from gage_queue.broker import redis_transport

        redis_transport.install()
    return None


def embedded_dir(settings: Settings) -> str:
    return broker_dir(settings.require_runs_dir())


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu transport options for the settings' broker."""
    if is_embedded(settings):
        root = embedded_dir(settings)
        messages = os.path.join(root, "messages")
        return {
            "data_folder_in": messages,
            "data_folder_out": messages,
            "control_folder": os.path.join(root, "control"),
            "polling_interval": FILESYSTEM_POLL,
        }
    timeout = settings.visibility_timeout
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": max(1.0, min(10.0, timeout / 4)),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }


def prepare_broker(settings: Settings) -> None:
    """Create the embedded broker's folders (nothing to do for others)."""
    if not is_embedded(settings):
        return
    for name in ("messages", "claimed", "control"):
        make_dirs(os.path.join(embedded_dir(settings), name))


def prune_embedded(settings: Settings) -> int:
    """Tidy the embedded broker; how many messages claimed by dead workers it put back.

    Also deletes broadcast messages older than 10 minutes (those of workers
    gone for good would pile up).
    """
    if not is_embedded(settings):
        return 0
    from gage_queue.broker.embedded import prune_broadcasts, restore_orphaned

    prune_broadcasts(embedded_dir(settings))
    return restore_orphaned(embedded_dir(settings))
