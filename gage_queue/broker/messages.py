"""Celery task messages, built and published with kombu alone.

Sending a task needs no Celery: a submitter that imported it would pay
for it on every `gage-submit` (most of the import time of a submit). This
module makes the message Celery's `send_task` makes for a gage-queue
task (protocol 2: the task in the headers, a JSON body of args, kwargs
and an empty embed; one positional argument, results ignored) and
publishes it as Celery does: to the default exchange with the queue's name
as routing key, declaring the queue on its own direct exchange first,
persistent. A Celery worker consumes it as one of its own;
tests/test_worker_messages.py compares the two on a real Redis and has a
real `celery worker` execute one.

To the embedded broker (a folder) a message is written without kombu
(`put_embedded_task`), as the file kombu's publish through
`embedded.Transport` writes, and to Redis it is pushed without kombu
(`redis_publish`), as kombu's Redis transport pushes it: the same envelope
(`task_envelope`). A submitter on either imports no kombu at all.

Two values differ, neither read by a worker: `reply_to` is empty (Celery
puts the sending thread's id there, for result backends; gage-queue stores
no results), and a task sent from inside a task does not name that task
as its parent (`parent_id`, `root_id`; only event monitors show them).

A worker accepts nothing else: `gage_worker.consumer_guard` checks every message
it receives against `task_message` and the constants here, so the sender
and the check cannot drift apart.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gage_queue.broker.config import (
    CONNECT_TIMEOUT,
    broker_transport,
    broker_url,
    transport_options,
)
from gage_queue.settings import Settings
from gage_runs.names import random_uuid4

if TYPE_CHECKING:
    from kombu import Connection, Queue

EXEC_TASK = "gage.exec"
FINALIZE_TASK = "gage.finalize"
SERVED_TASKS = (EXEC_TASK, FINALIZE_TASK)
SERIALIZER = "json"
CONTENT_TYPE = "application/json"  # what kombu's json serializer declares
CONTENT_ENCODING = "utf-8"
DELIVERY_MODE = "persistent"  # Celery's task_default_delivery_mode
PERSISTENT = 2  # DELIVERY_MODE as kombu stores it
# Headers a broker adds to a message it delivers again (kombu's Redis
# transport, restoring an unacked message), with the only value it sets.
REDELIVERY_HEADERS = {"redelivered": True}
# Headers only monitors read (Flower's task list, Celery's logs): the
# submitter names the run there (`TaskDisplay`), the worker checks their form.
DISPLAY_HEADERS = ("shadow", "argsrepr")
DISPLAY_LIMIT = 300


@dataclass(frozen=True)
class TaskDisplay:
    """How monitors show a task: `gage.exec train (gidik-livih)`, `['<id>'] lr=0.01`."""

    shadow: str | None = None
    argsrepr: str | None = None


def task_queue(name: str) -> Queue:
    """A queue on its own direct exchange, as Celery creates missing queues."""
    from kombu import Exchange, Queue

    return Queue(name, Exchange(name), routing_key=name)


def broker_connection(settings: Settings) -> Connection:
    """A (lazy) connection for sending, as Celery's `connection_for_write` makes it."""
    from kombu import Connection

    return Connection(
        broker_url(settings),
        transport=broker_transport(settings),
        transport_options=transport_options(settings),
        connect_timeout=CONNECT_TIMEOUT,
    )


def task_message(
    name: str, args: Sequence[Any], task_id: str, display: TaskDisplay | None = None
) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """The body, headers and properties of a task message (Celery protocol 2)."""
    args = list(args)
    display = display or TaskDisplay()
    headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": display.shadow,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": display.argsrepr or repr(args),
        "kwargsrepr": "{}",
        "origin": origin(),
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    properties = {"correlation_id": task_id, "reply_to": ""}
    return (args, {}, embed), headers, properties


def origin() -> str:
    """The `origin` header: the sending process, as Celery names it."""
    return f"gen{os.getpid()}@{os.uname().nodename}"  # the host, as socket.gethostname()


def publish_task(connection: Connection, name: str, args: Sequence[Any], queue: str,
                 display: TaskDisplay | None = None) -> str:
    """Send task `name` with `args` to `queue` once, no retry; the task id."""
    from kombu import Producer

    task_id = random_uuid4()
    body, headers, properties = task_message(name, args, task_id, display)
    Producer(connection, auto_declare=False).publish(
        body,
        exchange="",
        routing_key=queue,
        declare=[task_queue(queue)],
        serializer=SERIALIZER,
        delivery_mode=DELIVERY_MODE,
        headers=headers,
        retry=False,
        **properties,
    )
    return task_id


def put_embedded_task(folder: str, name: str, args: Sequence[Any], queue: str,
                      display: TaskDisplay | None = None) -> str:
    """Send task `name` with `args` to `queue` of the embedded broker; the task id.

    `folder` is the broker's messages folder. The file is the one
    `publish_task` makes there through `embedded.Transport` (a JSON
    envelope with the body in base64), written under a hidden name and
    renamed into place. The queue's binding (`control/<queue>.exchange`)
    is left to the worker's own declare: nothing publishes to a queue's
    exchange, only to the queue. Raises OSError.
    """
    task_id, data = task_envelope(name, args, queue, display)
    put_embedded_message(folder, queue, data)
    return task_id


def task_envelope(name: str, args: Sequence[Any], queue: str,
                  display: TaskDisplay | None = None) -> tuple[str, bytes]:
    """The task id, and the message as kombu's virtual transports store it for
    `publish_task` to `queue`: its filesystem transport as a file, its Redis
    transport as a list item (the same JSON envelope, the body in base64)."""
    task_id = random_uuid4()
    body, headers, properties = task_message(name, args, task_id, display)
    envelope = {
        "body": base64.b64encode(json.dumps(body).encode(CONTENT_ENCODING)).decode(),
        "content-encoding": CONTENT_ENCODING,
        "content-type": CONTENT_TYPE,
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": PERSISTENT,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": random_uuid4(),
        },
    }
    return task_id, json.dumps(envelope).encode()


def put_embedded_message(folder: str, queue: str, data: bytes) -> None:
    """Add a message file to `folder` atomically, named as `embedded.Channel` names it."""
    name = f"{time.time_ns():020d}_{random_uuid4().replace('-', '')}.{queue}.msg"
    hidden = os.path.join(folder, f".{name}.tmp")
    try:
        with open(hidden, "wb") as f:
            f.write(data)
        os.rename(hidden, os.path.join(folder, name))
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(hidden)
        raise
