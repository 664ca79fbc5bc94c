"""Hostile messages: rejected and logged once; nothing runs; the worker goes on.

Raw messages are published with kombu, as anyone who can reach the broker
could, against a real `gage-worker` on a private redis-server.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import time
import uuid
from typing import Any

import pytest
from kombu import Connection, Producer
from support.workers import Bed, wait_for

from gage_queue.broker import redis_transport
from gage_queue.broker.config import broker_transport, broker_url
from gage_queue.broker.messages import task_message
from gage_queue.broker.send import BrokerSession
from gage_queue.settings import Settings
from gage_runs.meta import meta_timestamp, write_timestamp
from gage_runs.status import run_status
from gage_worker.celery_app import EXEC_TASK, FINALIZE_TASK

RUN_ID = "01234567-89ab-4def-8123-456789abcdef"  # a run id; no such run
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
CALLBACK = [{"task": "celery.accumulate", "args": [1], "kwargs": {}, "options": {},
             "subtask_type": None, "immutable": False}]


def _case(body: Any = None, *, raw: bytes | None = None, task: str = EXEC_TASK,
          content_type: str = "application/json", content_encoding: str = "utf-8",
          task_id: str | None = None, **headers: Any) -> dict[str, Any]:
    """A message like the submitter's, with the given parts changed."""
    task_id = task_id or str(uuid.uuid4())
    good_body, good_headers, properties = task_message(task, [RUN_ID], task_id)
    good_headers.update(headers)
    data = raw if raw is not None else json.dumps(good_body if body is None else body).encode()
    return {"body": data, "headers": good_headers, "content_type": content_type,
            "content_encoding": content_encoding, **properties}


MALFORMED = {
    # bodies
    "a path string": _case("../../etc"),
    "a two-element list": _case([[RUN_ID], {}]),
    "a number": _case(42),
    "null": _case(None, raw=b"null"),
    "an object": _case({}),
    "a non-string arg": _case([[1], {}, {}]),
    "two args": _case([["a", "b"], {}, {}]),
    "kwargs": _case([[], {"x": 1}, {}]),
    "a run id and kwargs": _case([[RUN_ID], {"x": 1}, EMBED]),
    "no embed": _case([[RUN_ID], {}, {}]),
    "a callback": _case([[RUN_ID], {}, {**EMBED, "callbacks": CALLBACK}]),
    "an errback": _case([[RUN_ID], {}, {**EMBED, "errbacks": CALLBACK}]),
    "a chain": _case([[RUN_ID], {}, {**EMBED, "chain": CALLBACK}]),
    "a chord": _case([[RUN_ID], {}, {**EMBED, "chord": CALLBACK[0]}]),
    "not JSON": _case(raw=b"not json {"),
    "deeply nested": _case(raw=b"[" * 3000),
    "too long": _case([["x" * 10000], {}, EMBED]),
    "pickle": _case(raw=pickle.dumps(([RUN_ID], {}, EMBED)),
                    content_type="application/x-python-serialize", content_encoding="binary"),
    "latin-1": _case(content_encoding="latin-1"),
    "yaml": _case(content_type="application/x-yaml"),
    # headers
    "timelimit": _case(timelimit=[4, 3]),
    "eta": _case(eta="2030-01-01T00:00:00+00:00"),
    "countdown": _case(countdown=5),
    "expires": _case(expires="2000-01-01T00:00:00+00:00"),
    "retries": _case(retries=3),
    "group": _case(group=str(uuid.uuid4())),
    "shadow": _case(shadow="gage.exec\nFORGED shadow line"),
    "forged argsrepr": _case(argsrepr="['x']\nFORGED argsrepr line"),
    "an origin with a newline": _case(origin="gen1@host\nFORGED origin line"),
    "a result wanted": _case(ignore_result=False),
    "a forged redelivery flag": _case(redelivered="yes"),
    "stamps": _case(stamped_headers=["x"], stamps={"x": 1}),
    "no task header": {**_case(), "headers": {}},
    "a task id with a newline": _case(task_id="x\nFORGED task id line"),
    "a task id not matching": {**_case(), "correlation_id": str(uuid.uuid4())},
    "a built-in task": _case([[1, 2], {}, EMBED], task="celery.accumulate",
                             argsrepr="[1, 2]"),
    "an unknown task": _case(task="os.system"),
    "a finalize with a path": _case([["../../etc"], {}, EMBED], task=FINALIZE_TASK),
}


def _publish(url: str, queue: str, message: dict[str, Any]) -> None:
    with Connection(url) as conn:
        Producer(conn).publish(exchange="", routing_key=queue, retry=False, **message)


@pytest.mark.system
def test_malformed_messages_are_rejected_and_the_worker_serves_on(redis_bed):
    worker = redis_bed.start_worker("-c", "1")
    pool = sorted(p.pid for p in worker.pool())
    baseline = redis_bed.stage_and_submit(1)
    redis_bed.wait_status(baseline)
    before = len(worker.log().splitlines())

    started = time.time()
    for name, message in MALFORMED.items():
        queue = "gage-finalize" if "finalize" in name else "gage"
        _publish(redis_bed.broker_url, queue, message)
    good = redis_bed.stage_and_submit(1)

    assert redis_bed.wait_status(good) == {good[0].id: "completed"}
    delay = redis_bed.executions(good[0])[0]["time"] - started
    wait_for(lambda: worker.log().count("rejected message:") >= len(MALFORMED), 10,
             "every malformed message to be rejected")
    new_lines = worker.log().splitlines()[before:]
    rejected = [line for line in new_lines if "rejected message:" in line]
    assert len(rejected) == len(MALFORMED), "\n".join(rejected)
    assert not [line for line in new_lines if line.startswith("FORGED")]
    assert "Unrecoverable error" not in worker.log() and "Traceback" not in worker.log()
    assert "received" not in "".join(line for line in new_lines if "celery.accumulate" in line)
    assert "rejected message: task 'gage.exec', id 'x\\nFORGED task id line'" in worker.log()
    assert "header 'timelimit' is [4, 3], not [None, None]" in worker.log()
    assert "task 'celery.accumulate' is not served here" in worker.log()
    assert "content 'application/x-python-serialize'/'binary' is not" in worker.log()
    assert "argument '../../etc' is not a run id" in worker.log()
    assert worker.proc.poll() is None
    assert sorted(p.pid for p in worker.pool()) == pool  # no pool restart either
    assert redis_bed.redis.client().llen("gage") == 0  # rejected: not requeued
    assert redis_bed.redis.client().hlen("unacked") == 0
    assert delay < 1.0 + _latency(redis_bed, baseline[0]), f"delayed {delay:.2f} s"


def _latency(bed: Any, run: Any) -> float:
    """Seconds from a run's submit to its start, from its queue meta."""
    with open(os.path.join(run.meta_dir, "queue", "submitted")) as f:
        submitted_us = json.load(f)["time"]
    return bed.executions(run)[0]["time"] - submitted_us / 1e6


@pytest.mark.system
def test_hostile_run_ids_are_rejected(redis_bed, tmp_path):
    other_runs = tmp_path / "other-runs"
    foreign = redis_bed.stage(runs_dir=other_runs)  # a run of another runs dir
    smuggled = redis_bed.stage(runs_dir=other_runs)  # linked into ours
    for suffix in (".meta", ""):
        os.symlink(f"{smuggled.run_dir}{suffix}", redis_bed.runs_dir / f"{smuggled.id}{suffix}")
    plain = redis_bed.stage()  # staged by Gage itself, not submitted to the queue
    write_timestamp(plain, "started")  # as if `gage run` were running it
    worker = redis_bed.start_worker("-c", "1")
    not_run_ids = ["../../etc", "not-a-run", foreign.meta_dir, foreign.id.upper(),
                   f"{foreign.id}/../../etc"]

    with BrokerSession(redis_bed.settings()) as session:
        for arg in not_run_ids:
            session.send(EXEC_TASK, arg, "gage")
        session.send(EXEC_TASK, foreign.id, "gage")
        session.send(EXEC_TASK, smuggled.id, "gage")
        session.send(FINALIZE_TASK, "../../etc", "gage-finalize")
        session.send(EXEC_TASK, plain.id, "gage")
        session.send(FINALIZE_TASK, plain.id, "gage-finalize")
        session.send(EXEC_TASK, ["../../etc"], "gage")  # type: ignore[arg-type]
    good = redis_bed.stage_and_submit(1)

    assert redis_bed.wait_status(good) == {good[0].id: "completed"}
    wait_for(lambda: worker.log().count("is not a run id") >= len(not_run_ids) + 2, 10,
             "every message without a run id to be rejected")
    wait_for(lambda: worker.log().count("rejected exec message") >= 2, 10,
             "messages naming runs outside the runs dir to be rejected")
    log = worker.log()
    assert "argument '../../etc' is not a run id" in log
    assert "argument 'not-a-run' is not a run id" in log
    assert "argument ['../../etc'] is not a run id" in log
    assert f"rejected exec message: no run {foreign.id} in" in log
    assert f"rejected exec message: run {smuggled.id} resolves outside the runs dir" in log
    assert redis_bed.executions(foreign) == redis_bed.executions(smuggled) == []
    assert run_status(foreign) == run_status(smuggled) == "staged"
    wait_for(lambda: len(re.findall(f"run {plain.id}: .*not submitted to the queue", worker.log()))
             == 2, 10,
             "messages naming a run outside the queue to be ignored")
    assert redis_bed.executions(plain) == [] and meta_timestamp(plain, "stopped") is None
    assert worker.proc.poll() is None
    assert redis_bed.redis.client().llen("gage") == 0


def _envelope(**changes: Any) -> bytes:
    """A kombu envelope of a good exec message, as kombu's Redis transport pushes it."""
    body, headers, properties = task_message(EXEC_TASK, [RUN_ID], str(uuid.uuid4()))
    envelope = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json", "headers": headers,
        "properties": {**properties, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
                       "delivery_info": {"exchange": "", "routing_key": "gage"}, "priority": 0},
    }
    for key, value in changes.items():
        target = envelope["properties"] if key in envelope["properties"] else envelope
        target[key.replace("_", "-") if key.startswith("content") else key] = value
    return json.dumps(envelope).encode()


RAW_ITEMS = {
    "garbage": b"garbage",
    "not an envelope": b'{"not": "a kombu envelope"}',
    "a number": b"42",
    "a list": b"[1, 2]",
    "not UTF-8": b"\xff\xfe{",
    "deeply nested": b"[" * 100000,
    "a kombu type marker": b'{"__type__": "datetime", "__value__": "x"}',
    "properties not an object": b'{"body": "", "properties": [1]}',
    "no delivery tag": _envelope(delivery_tag=None),
    "no delivery info": _envelope(delivery_info={}),
    "a bad priority": _envelope(priority="high"),
    "headers a list": _envelope(headers=[1]),
    "an undecodable body": _envelope(body="%%% not base64 %%%"),
    "an unknown body encoding": _envelope(body_encoding="rot13"),
    "a body that is a number": _envelope(body=42),
    "a newline in it": b"garbage\nFORGED raw line",
}


@pytest.mark.system
def test_raw_redis_items_are_dropped_and_the_worker_serves_on(redis_bed):
    worker = redis_bed.start_worker("-c", "1")
    pool = sorted(p.pid for p in worker.pool())
    client = redis_bed.redis.client()
    for item in RAW_ITEMS.values():
        client.lpush("gage", item)
    client.lpush("gage-finalize", b"garbage for finalize")
    client.lpush("gage", _envelope(body=base64.b64encode(b"not json {").decode()))  # a message
    good = redis_bed.stage_and_submit(1)

    assert redis_bed.wait_status(good) == {good[0].id: "completed"}
    wait_for(lambda: worker.log().count("dropped an item of Redis list") >= len(RAW_ITEMS) + 1,
             10, "every raw item to be dropped")
    log = worker.log()
    dropped = [line for line in log.splitlines() if "dropped an item of Redis list" in line]
    assert len(dropped) == len(RAW_ITEMS) + 1, "\n".join(dropped)
    assert "dropped an item of Redis list 'gage': not JSON (JSONDecodeError): b'garbage'" in log
    assert "list 'gage-finalize': not JSON" in log
    assert "not a kombu envelope (not a JSON object): b'42'" in log
    assert "not a kombu envelope (no properties): b'{\"not\": \"a kombu envelope\"}'" in log
    assert ": a body that is not base64: " in log
    assert "body encoding 'rot13' is not base64" in log
    assert "b'garbage\\nFORGED raw line'" in log
    assert not [line for line in log.splitlines() if line.startswith("FORGED")]
    assert "rejected message:" in log and "not JSON" in log  # the decodable one: the inbox's
    assert "Unrecoverable error" not in log and "Traceback" not in log
    assert worker.proc.poll() is None
    assert sorted(p.pid for p in worker.pool()) == pool
    assert client.llen("gage") == client.llen("gage-finalize") == client.hlen("unacked") == 0


@pytest.mark.system
def test_raw_items_are_dropped_on_a_unix_socket_too(tmp_path, redis_unix_server):
    """`redis+socket://`: kombu names the transport from the URL; it is the guarded one."""
    bed = Bed(tmp_path, broker_url=redis_unix_server.url, redis=redis_unix_server)
    try:
        worker = bed.start_worker("-c", "1")
        redis_unix_server.client().lpush("gage", b"garbage")
        good = bed.stage_and_submit(1)
        assert bed.wait_status(good) == {good[0].id: "completed"}
        wait_for(lambda: "dropped an item of Redis list 'gage'" in worker.log(), 10,
                 "the raw item to be dropped")
        assert worker.proc.poll() is None and "Unrecoverable error" not in worker.log()
    finally:
        bed.close()


def test_rediss_keeps_tls_with_the_guarded_transport():
    """The guarded transport keeps what kombu reads from the scheme: TLS for rediss://."""
    settings = Settings.from_env({"GAGE_BROKER_URL": "rediss://127.0.0.1:1/0"})
    assert broker_transport(settings) is None
    conn = Connection(broker_url(settings), transport=broker_transport(settings))
    assert conn.transport_cls == "rediss" and conn.ssl
    assert conn.get_transport_cls() is redis_transport.Transport
    socket_conn = Connection("redis+socket:///tmp/gage-test.sock")
    assert socket_conn.get_transport_cls() is redis_transport.Transport
