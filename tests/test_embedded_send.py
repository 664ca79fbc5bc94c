"""Sending to the embedded broker without kombu: the file kombu writes, consumed and run.

A `BrokerSession` on the embedded broker writes its message files itself
(`messages.put_embedded_task`). These tests compare such a file with the one
kombu's publish through `embedded.Transport` writes, consume sent messages
on a real kombu connection to the transport (checked by the worker's inbox
guard), and have a real `gage-worker` run a run sent by a process that never
imported kombu.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from test_embedded_broker import consume, consumer_connection, folder, waiting

from gage_queue.broker.config import prepare_broker
from gage_queue.broker.messages import EXEC_TASK, FINALIZE_TASK, broker_connection, publish_task
from gage_queue.broker.send import BrokerSession
from gage_queue.errors import BrokerUnavailable
from gage_queue.settings import Settings
from gage_worker.consumer_guard import reject_reason

QUEUE = "gage"
RUN_IDS = [str(uuid.UUID(int=i)) for i in range(1, 4)]
MESSAGE_NAME = re.compile(r"[0-9]{20}_[0-9a-f]{32}\.(?P<queue>[^.]+)\.msg\Z")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(runs_dir=str(tmp_path / "runs"))
    prepare_broker(settings)
    return settings


def _one_message(settings: Settings) -> tuple[str, str]:
    """The name and text of the only file in the messages folder."""
    (path,) = folder(settings, "messages").iterdir()
    return path.name, path.read_text()


def _ids_blanked(text: str) -> str:
    """A stored message with its task id and delivery tag blanked."""
    message = json.loads(text)
    for value in (message["headers"]["id"], message["properties"]["delivery_tag"]):
        text = text.replace(value, "<id>")
    return text


@pytest.mark.parametrize("task, queue", [(EXEC_TASK, "gage"), (FINALIZE_TASK, "gage-finalize")])
def test_a_session_writes_the_file_kombu_writes(tmp_path, task, queue):
    by_kombu = Settings(runs_dir=str(tmp_path / "kombu"))
    by_session = Settings(runs_dir=str(tmp_path / "session"))
    prepare_broker(by_kombu)
    with broker_connection(by_kombu) as conn:
        publish_task(conn, task, [RUN_IDS[0]], queue)
    with BrokerSession(by_session) as session:
        session.send(task, RUN_IDS[0], queue)

    kombu_name, kombu_text = _one_message(by_kombu)
    session_name, session_text = _one_message(by_session)
    assert MESSAGE_NAME.match(kombu_name)["queue"] == queue
    assert MESSAGE_NAME.match(session_name)["queue"] == queue
    assert _ids_blanked(session_text) == _ids_blanked(kombu_text)  # byte for byte
    assert _ids_blanked(session_text) != session_text


def test_a_consumer_takes_what_a_session_sends_and_the_inbox_accepts_it(settings):
    with BrokerSession(settings) as session:
        for run_id in RUN_IDS:
            session.send(EXEC_TASK, run_id, QUEUE)
        assert session.queue_size(QUEUE) == 3
        assert session.queue_size("other") == 0

    with consumer_connection(settings) as conn:
        got = consume(conn, 3, ack=True)

    assert [message.payload[0] for message in got] == [[run_id] for run_id in RUN_IDS]
    assert [reject_reason(message) for message in got] == [None, None, None]
    assert waiting(settings) == []
    assert [p.name for p in folder(settings, "messages").iterdir()] == []  # no temp file left
    with BrokerSession(settings) as session:
        assert session.queue_size(QUEUE) == 0


def test_an_unusable_messages_folder_is_the_broker_unavailable(settings):
    messages = folder(settings, "messages")
    messages.rmdir()
    messages.write_text("not a folder")
    with BrokerSession(settings) as session, pytest.raises(BrokerUnavailable) as raised:
        session.send(EXEC_TASK, RUN_IDS[0], QUEUE)
    assert str(raised.value) == (
        f"cannot reach the broker at filesystem://localhost/: [Errno 20] Not a directory:"
        f" '{messages}'"
    )


SUBMIT_WITHOUT_KOMBU = textwrap.dedent("""\
    import sys
    from gage_runs.runs_dir import resolve_run_id
    from gage_queue.broker.send import submit_run
    from gage_queue.settings import Settings

    settings = Settings.from_env()
    submit_run(resolve_run_id(settings.require_runs_dir(), sys.argv[1]), settings=settings)
    assert not [m for m in sys.modules if m.partition(".")[0] in ("kombu", "celery")]
""")


@pytest.mark.system
def test_a_worker_runs_what_a_process_without_kombu_sent(worker_bed):
    worker_bed.start_worker("-c", "1")
    run = worker_bed.stage()

    submit = subprocess.run(
        [sys.executable, "-c", SUBMIT_WITHOUT_KOMBU, run.id], env=worker_bed.worker_env(),
        capture_output=True, text=True, timeout=60, cwd=os.path.dirname(__file__),
    )

    assert submit.returncode == 0, submit.stderr
    assert worker_bed.wait_status([run]) == {run.id: "completed"}
    assert len(worker_bed.executions(run)) == 1
