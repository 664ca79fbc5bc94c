"""Sends publish Celery's own task messages with kombu alone, and import no Celery.

The messages a `BrokerSession` sends are compared, as stored by the
broker, with those Celery's `send_task` stores for the same task; a plain
`celery worker` executes a run submitted by a process without Celery.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gage_queue.broker.config import embedded_dir, prepare_broker
from gage_queue.broker.messages import broker_connection, task_message
from gage_queue.broker.send import BrokerSession
from gage_worker.celery_app import EXEC_TASK, FINALIZE_TASK, app_for
from gage_worker.consumer_guard import MessageRejected, check_message, reject_reason

# Differ between any two messages; the rest must be equal.
ID_HEADERS = ("id", "root_id")
ID_PROPERTIES = ("correlation_id", "delivery_tag")


def _celery_send(bed: Any, task: str, arg: str, queue: str) -> None:
    """Send as a Celery program would: the configured app's `send_task`."""
    app = app_for(bed.settings())
    app.send_task(task, args=[arg], queue=queue, ignore_result=True)


def _redis_messages(bed: Any, queue: str) -> list[dict[str, Any]]:
    """The queue's messages as stored."""
    client = bed.redis.client()
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def _embedded_messages(bed: Any, queue: str) -> list[dict[str, Any]]:
    folder = Path(embedded_dir(bed.settings())) / "messages"
    found = []
    for path in folder.iterdir():
        message = json.loads(path.read_text())
        if message["properties"]["delivery_info"]["routing_key"] == queue:
            found.append(message)
    return found


def _normalized(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message with its ids blanked and its body decoded."""
    message = json.loads(json.dumps(message))
    body = message.pop("body")
    if message["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    message["body"] = json.loads(body)
    headers, properties = message["headers"], message["properties"]
    assert headers["id"] == headers["root_id"] == properties["correlation_id"]
    for name in ID_HEADERS:
        headers[name] = "<id>"
    for name in ID_PROPERTIES:
        properties[name] = "<id>"
    # Celery's sending thread's id, for result backends; empty from kombu.
    properties["reply_to"] = "<thread>"
    return message


@pytest.mark.parametrize("broker", [pytest.param("redis", marks=pytest.mark.system), "embedded"])
def test_messages_are_celerys(broker, request):
    bed = request.getfixturevalue("redis_bed" if broker == "redis" else "worker_bed")
    settings = bed.settings()
    prepare_broker(settings)
    read = _redis_messages if broker == "redis" else _embedded_messages
    run_id = "0123456789abcdef0123456789abcdef"

    for task, queue in ((EXEC_TASK, "gage"), (FINALIZE_TASK, "gage-finalize")):
        _celery_send(bed, task, run_id, queue)
        with BrokerSession(settings) as session:
            session.send(task, run_id, queue)

        # Told apart by reply_to: Celery's names its sending thread, kombu's is empty.
        by_kombu, by_celery = sorted(read(bed, queue), key=lambda m: m["properties"]["reply_to"])
        assert by_kombu["properties"]["reply_to"] == "" != by_celery["properties"]["reply_to"]
        assert by_kombu["headers"]["task"] == task
        assert by_kombu["content-type"] == "application/json"
        assert _normalized(by_kombu) == _normalized(by_celery)
        assert _normalized(by_kombu)["body"] == [
            [run_id], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        ]
    if broker == "redis":  # both declared the queue on its own exchange
        client = bed.redis.client()
        assert client.smembers("_kombu.binding.gage") == {b"gage\x06\x16\x06\x16gage"}


SUBMIT_WITHOUT_CELERY = textwrap.dedent("""\
    import sys
    from gage_runs.runs_dir import resolve_run_id
    from gage_queue.broker.send import submit_run
    from gage_queue.settings import Settings

    settings = Settings.from_env()
    submit_run(resolve_run_id(settings.require_runs_dir(), sys.argv[1]), settings=settings)
    assert not [m for m in sys.modules if m.partition(".")[0] == "celery"]
    assert not [m for m in sys.modules if m in ("gage_worker.tasks", "gage_worker.reconcile")]
""")


@pytest.mark.system
def test_celery_worker_executes_a_run_submitted_without_celery(redis_bed):
    """A plain `celery -A gage_worker worker` runs what a Celery-free submitter sent."""
    redis_bed.start_worker("-l", "info", command=[sys.executable, "-m", "celery", "-A",
                                                  "gage_worker", "worker"])
    run = redis_bed.stage()

    submit = subprocess.run(
        [sys.executable, "-c", SUBMIT_WITHOUT_CELERY, run.id], env=redis_bed.worker_env(),
        capture_output=True, text=True, timeout=60, cwd=os.path.dirname(__file__),
    )

    assert submit.returncode == 0, submit.stderr
    assert redis_bed.wait_status([run]) == {run.id: "completed"}  # exec, then finalize
    assert len(redis_bed.executions(run)) == 1


@pytest.mark.parametrize("broker", [pytest.param("redis", marks=pytest.mark.system), "embedded"])
def test_the_inbox_accepts_what_submitters_and_celery_send(broker, request):
    """Messages from `BrokerSession` and from Celery's `send_task` pass the worker's check."""
    bed = request.getfixturevalue("redis_bed" if broker == "redis" else "worker_bed")
    settings = bed.settings()
    prepare_broker(settings)
    run_id = "01234567-89ab-4def-8123-456789abcdef"
    for task, queue in ((EXEC_TASK, "gage"), (FINALIZE_TASK, "gage-finalize")):
        _celery_send(bed, task, run_id, queue)
        with BrokerSession(settings) as session:
            session.send(task, run_id, queue)

    with broker_connection(settings) as conn:
        for queue in ("gage", "gage-finalize"):
            received = conn.SimpleQueue(queue, no_ack=True)
            reasons = [reject_reason(received.get(timeout=5)) for _ in range(2)]
            assert reasons == [None, None]
            received.close()


def test_the_inbox_accepts_a_redelivered_message_only_as_the_broker_marks_it():
    """kombu's Redis transport adds `redelivered: true` when it restores a message."""
    task_id = "a98c3e88-bbb6-46f0-bdb8-1fd2cf8cedb8"
    body, headers, properties = task_message(EXEC_TASK, ["01234567-89ab-4def-8123-456789abcdef"],
                                             task_id)
    raw = json.dumps(body).encode()
    check_message({**headers, "redelivered": True}, properties, "application/json", "utf-8", raw)
    for bad in (1, "true", None):
        with pytest.raises(MessageRejected, match="header 'redelivered'"):
            check_message({**headers, "redelivered": bad}, properties, "application/json",
                          "utf-8", raw)
