"""The broker URL and transport options, and the embedded default broker.

Embedded default (no `GAGE_BROKER_URL`): kombu's `filesystem://` transport
with its folders in the runs dir, under `.gage-queue/broker/` (Gage lists
only `*.meta` entries, so the folder is invisible to it). Nothing to
install or start, and a submitter and a worker on one machine share it
through the runs dir they already share. A managed redis-server was the
other option; it needs a binary that may be absent, and a process to own.

What the filesystem transport does, and its limits:

- A message is a file in `messages/`; a consumer claims it by moving it to
  `processed/` (an atomic rename on one file system), so two workers never
  both take one message. Claimed files are pruned by reconcile.
- Acks are in memory: a message is gone from the folder once claimed. A
  worker that stops cleanly puts its unacked messages back; one that is
  killed loses them. Nothing is lost for good, because the runs dir is the
  truth: reconcile re-sends queued runs whose message is gone and
  finalizes runs whose worker died. There is no visibility timeout.
- Consumers poll the folder every 0.05 s (about 0.5% of a core while
  idle), so dispatch takes up to that long (Redis: a few ms), and broadcast (`celery inspect`/`control`) works only among
  processes on hosts that see the same folder.
- Use it on one machine. Over NFS the rename is still atomic, but polling
  a shared folder from many hosts is slow; use Redis for several hosts.

Redis and RabbitMQ: the URL is passed to kombu unchanged. For Redis the
visibility timeout (how long an unacked message stays invisible before
Redis redelivers it) is set in the transport options, and the periodic
restore of unacked messages is made as frequent as the timeout needs. For
RabbitMQ set `consumer_timeout` in rabbitmq.conf above the longest run
(its default, 30 minutes, closes the channel of a longer late-ack task).
"""

from __future__ import annotations

import os
from typing import Any

from gage_runs.fsmode import make_dirs

from .settings import Settings

EMBEDDED_URL = "filesystem://localhost/"
EMBEDDED_DIR = os.path.join(".gage-queue", "broker")
EMBEDDED_TRANSPORT = "gage_worker.embedded:Transport"
CONNECT_TIMEOUT = 3.0
FILESYSTEM_POLL = 0.5


def broker_url(settings: Settings) -> str:
    return settings.broker_url or EMBEDDED_URL


def is_embedded(settings: Settings) -> bool:
    return broker_url(settings).startswith("filesystem:")


def broker_transport(settings: Settings) -> str | None:
    """The kombu transport class for the broker URL (None: the one its scheme names)."""
    return EMBEDDED_TRANSPORT if is_embedded(settings) else None


def embedded_dir(settings: Settings) -> str:
    return os.path.join(settings.require_runs_dir(), EMBEDDED_DIR)


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
    """Put the embedded messages claimed by workers that died back in the queue; how many."""
    if not is_embedded(settings):
        return 0
    from .embedded import restore_orphaned

    return restore_orphaned(embedded_dir(settings))
