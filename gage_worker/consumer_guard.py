"""The worker's inbox: every task message is checked before Celery reads it.

Anyone who can reach the broker can publish to the worker's queues, so a
message is input from a stranger. Celery would act on much of it: a body
that is not its `[args, kwargs, embed]` triple crashes the consumer (and
every worker after it, as the message is restored), `timelimit`, `eta`,
`expires`, `retries` and the embedded callbacks reach the run, and its
built-in `celery.*` tasks run. So the worker's consumer (`GuardedConsumer`,
Celery's `worker_consumer`) hands Celery only a message that is exactly
what `messages.task_message` makes: a served task, a UUID id, JSON, one
run-id argument and every header at the value the submitter sends (plus
the `redelivered` flag a broker sets on a redelivery). Any
other message is rejected without requeue and logged once, as one line
with its task name and id escaped; the worker goes on at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from celery.worker.consumer import Consumer

from gage_queue.broker.messages import (
    CONTENT_ENCODING,
    CONTENT_TYPE,
    DISPLAY_HEADERS,
    DISPLAY_LIMIT,
    EXEC_TASK,
    REDELIVERY_HEADERS,
    SERVED_TASKS,
    task_message,
)
from gage_queue.layout import SUBMITTED, queue_file
from gage_runs.errors import RunLookupError
from gage_runs.names import is_run_id
from gage_runs.runs_dir import resolve_run_id

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes; a real body is about 130
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_ORIGIN = re.compile(r"gen[0-9]{1,10}@[!-~]{1,255}\Z")
_SHOWN = 80  # characters of a hostile value shown in the log


class MessageRejected(ValueError):
    """A task message gage-queue did not send; its message says why."""


def check_message(
    headers: object, properties: object, content_type: object,
    content_encoding: object, body: object,
) -> None:
    """Raise MessageRejected unless this is a message the submitter sends."""
    if not isinstance(headers, dict):
        raise MessageRejected("no task headers (not a Celery protocol 2 message)")
    task, task_id = headers.get("task"), headers.get("id")
    if task not in SERVED_TASKS:
        raise MessageRejected(f"task {shown(task)} is not served here")
    if not isinstance(task_id, str) or not _UUID.match(task_id):
        raise MessageRejected(f"task id {shown(task_id)} is not a UUID")
    if content_type != CONTENT_TYPE or content_encoding != CONTENT_ENCODING:
        raise MessageRejected(
            f"content {shown(content_type)}/{shown(content_encoding)} is not "
            f"{CONTENT_TYPE}/{CONTENT_ENCODING}"
        )
    decoded = _decoded(body)
    run_id = _run_id_argument(decoded)
    expected_body, expected_headers, _ = task_message(task, [run_id], task_id)
    _check_headers(headers, expected_headers)
    if not _same_json(decoded, expected_body):
        raise MessageRejected(f"body {shown(decoded)} is not [[run id], {{}}, no embeds]")
    _check_properties(properties, task_id)


def _decoded(body: object) -> Any:
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise MessageRejected(f"body of type {type(body).__name__} is not JSON text")
    if len(body) > MAX_BODY:
        raise MessageRejected(f"body of {len(body)} bytes is over {MAX_BODY}")
    try:
        return json.loads(bytes(body).decode(CONTENT_ENCODING))
    except (ValueError, RecursionError) as e:
        raise MessageRejected(f"body is not JSON: {shown(str(e))}") from None


def _run_id_argument(body: Any) -> str:
    if not (isinstance(body, list) and len(body) == 3):
        raise MessageRejected(f"body {shown(body)} is not [args, kwargs, embed]")
    args, kwargs, _ = body
    if not isinstance(args, list) or len(args) != 1:
        raise MessageRejected(f"args {shown(args)} are not one run id")
    if kwargs != {}:
        raise MessageRejected(f"kwargs {shown(kwargs)} are not empty")
    if not is_run_id(args[0]):
        raise MessageRejected(f"argument {shown(args[0])} is not a run id")
    return args[0]


def _check_headers(headers: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in REDELIVERY_HEADERS.items():
        if name in headers and not _same_json(headers[name], value):
            raise MessageRejected(f"header {name!r} is {shown(headers[name])}, not {value!r}")
    unexpected = sorted(map(str, headers.keys() - expected.keys() - REDELIVERY_HEADERS.keys()))
    if unexpected:
        raise MessageRejected(f"unexpected header {shown(unexpected[0])}")
    missing = sorted(expected.keys() - headers.keys())
    if missing:
        raise MessageRejected(f"missing header {shown(missing[0])}")
    origin = headers["origin"]
    if not isinstance(origin, str) or not _ORIGIN.match(origin):
        raise MessageRejected(f"header 'origin' {shown(origin)} is not gen<pid>@<host>")
    for name in DISPLAY_HEADERS:
        _check_display(name, headers[name], expected[name])
    for name, value in expected.items():
        if name not in ("origin", *DISPLAY_HEADERS) and not _same_json(headers[name], value):
            raise MessageRejected(
                f"header {name!r} is {shown(headers[name])}, not {shown(value)}"
            )


def _check_display(name: str, value: object, default: object) -> None:
    """A display header: the default, or printable text of at most DISPLAY_LIMIT characters."""
    if value == default:
        return
    if not isinstance(value, str) or len(value) > DISPLAY_LIMIT or not value.isprintable():
        raise MessageRejected(f"header {name!r} is {shown(value)}: not short printable text")


def _check_properties(properties: object, task_id: str) -> None:
    """The properties Celery's request reads: correlation id, reply_to, priority."""
    if not isinstance(properties, Mapping):
        raise MessageRejected("message properties are not a mapping")
    if properties.get("correlation_id") != task_id:
        raise MessageRejected(
            f"correlation_id {shown(properties.get('correlation_id'))} is not the task id"
        )
    reply_to = properties.get("reply_to")
    if reply_to not in ("", None) and not (isinstance(reply_to, str) and _UUID.match(reply_to)):
        raise MessageRejected(f"reply_to {shown(reply_to)} is not empty or a UUID")
    if properties.get("priority") not in (None, 0):
        raise MessageRejected(f"priority {shown(properties.get('priority'))} is not 0")


def _same_json(value: Any, expected: Any) -> bool:
    """Equal as JSON values (a tuple sent is a list received; True is not 1)."""
    return json.dumps(value, sort_keys=True) == json.dumps(expected, sort_keys=True)


def shown(value: object) -> str:
    """`value` for a log line: a repr (no raw newline survives), cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def reject_reason(message: Any) -> str | None:
    """Why a received kombu message must be rejected, or None to accept it."""
    try:
        check_message(
            message.headers, message.properties, message.content_type,
            message.content_encoding, message.body,
        )
    except MessageRejected as e:
        return str(e)
    return None


class GuardedConsumer(Consumer):
    """Celery's consumer, serving only gage-queue's tasks and checked messages."""

    def update_strategies(self) -> None:
        super().update_strategies()
        for name in list(self.strategies):
            if name not in SERVED_TASKS:
                del self.strategies[name]

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], None]:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> None:
            reason = reject_reason(message)
            if reason is None:
                if not self._is_wakeup(message):
                    handle(message)
                return
            headers = message.headers if isinstance(message.headers, dict) else {}
            log.error(
                "rejected message: task %s, id %s: %s",
                shown(headers.get("task")), shown(headers.get("id")), reason,
            )
            message.reject_log_error(log, self.connection_errors, requeue=False)

        return on_task_received

    def _is_wakeup(self, message: Any) -> bool:
        """An exec task from a run queue (not this node's own): a placement pass is due.

        Acked here, in the worker's main process, without a pool process:
        the scheduler thread places the run (`gage_worker.scheduler`) and
        sends it to a node's own queue. If the worker dies before the pass,
        another worker's periodic pass places the run.
        """
        app = self.app
        if app.wakeup is None or message.headers.get("task") != EXEC_TASK:
            return False
        if (message.delivery_info or {}).get("routing_key") == app.node_queue:
            return False
        message.ack()
        run_id = _decoded(message.body)[0][0]  # checked: a run id
        try:
            run = resolve_run_id(app.settings.require_runs_dir(), run_id)
        except RunLookupError as e:
            log.error("rejected exec message: %s", e)
            return True
        if not os.path.exists(queue_file(run, SUBMITTED)):
            log.info("run %s: not submitted to the queue; nothing to place", run.id)
            return True
        app.wakeup.set()
        return True
