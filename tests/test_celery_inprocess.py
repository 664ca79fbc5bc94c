"""The Celery side in one process: the gage app served by an in-process worker.

No worker process and no broker server. `app_for(settings)` (the app a
`gage-worker` runs) is served by `celery.contrib.testing.worker.start_worker`,
what pytest-celery's `celery_session_worker` fixture runs: a `WorkController`
in a thread of the test process, with the plugin's `celery_worker_pool`
(solo) and `celery_worker_parameters`. pytest-celery 1.x's own `celery_worker`
fixture is a worker in a Docker container and is not used.

pytest-celery 1.3's plugin (entry point `celery`) imports docker and
pytest_docker_tools and re-exports Celery's own `celery.contrib.pytest`
fixtures; it loads without a Docker engine, which only its Docker fixtures
(`celery_worker`, `celery_setup`, the `default_*` brokers and backends)
would reach for. Should loading it ever need one, `-p no:celery -p
celery.contrib.pytest` loads Celery's in-process fixtures alone.

The broker is the embedded one in the test's runs dir: the app's default,
nothing to start. `memory://` is not a broker URL gage-queue's settings
accept (`settings.check_broker_url`), and an app whose Celery config were
changed behind the settings would send its finalize tasks (`send_finalize`
reads the settings) to a broker its worker does not read.

The worker is the real one but for its pool: the same consumer
(`GuardedConsumer`), routes, queues and bootsteps (reconcile), and the exec
task starts a real keeper for a real staged run.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.app import setup_default_app
from celery.contrib.testing.worker import start_worker as start_inprocess_worker
from celery.events.state import State
from celery.worker import state as worker_state
from kombu import Producer
from support.workers import Bed, wait_for

from gage_queue.broker.config import embedded_dir, prepare_broker
from gage_queue.broker.messages import EXEC_TASK, FINALIZE_TASK, task_message
from gage_queue.layout import node_queue
from gage_queue.locks import read_record
from gage_queue.settings import Settings
from gage_queue.states import RunState
from gage_worker import launch
from gage_worker.celery_app import GageApp, app_for
from gage_worker.tasks import RunFailed

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def gage_app(bed: Bed, **overrides: Any) -> GageApp:
    """The app a `gage-worker` on this bed runs, ready for an in-process worker."""
    settings = bed.settings(**overrides)
    prepare_broker(settings)
    app = app_for(settings)
    app.finalizes = True  # as a worker without GPUs: it consumes the finalize queue
    # The worker's logs go through pytest's capture (caplog), not a handler
    # Celery would put on the root logger of the whole test session.
    app.conf.worker_hijack_root_logger = False
    return app


@contextmanager
def inprocess_worker(app: GageApp, pool: str, parameters: dict[str, Any],
                     **options: Any) -> Iterator[Any]:
    """`app` served in a thread until the block ends; the `WorkController`.

    Celery's ping check is off: it sends `celery.ping`, a task the
    consumer guard refuses. Ready means Celery's `on_consumer_ready` ran
    (`TestWorkController.ensure_started`). Each worker gets a node name of
    its own: kombu's virtual transports remember queue bindings per process,
    not per folder, so a second worker named like the first would not bind
    its control queue in this test's broker folder.
    """
    node = f"inprocess-{uuid.uuid4().hex[:8]}@test"
    try:
        # The worker makes `app` the current and default app; pytest-celery's
        # `celery_app` fixture puts the previous ones back with this helper.
        with setup_default_app(app), start_inprocess_worker(
            app, pool=pool, perform_ping_check=False, hostname=node, loglevel="INFO",
            **{**parameters, **options},
        ) as worker:
            yield worker
            # Stop now, not at the loop's next 2 s poll: the remote shutdown
            # reaches the consumer through the broker, as `celery control` would.
            worker_state.should_terminate = 0
            app.control.shutdown(destination=[node])
    finally:
        launch._launcher.close()  # the keeper server this process started exits


@pytest.fixture
def worker_options(celery_worker_pool: str, celery_worker_parameters: dict[str, Any]
                   ) -> tuple[str, dict[str, Any]]:
    """pytest-celery's pool (solo) and worker parameters."""
    return celery_worker_pool, dict(celery_worker_parameters)


def messages(app: GageApp) -> dict[str, list[Path]]:
    """Waiting and claimed message files of the embedded broker, by queue."""
    root = Path(embedded_dir(app.settings))
    found: dict[str, list[Path]] = {}
    for path in [*root.glob("messages/*.msg"), *root.glob("claimed/*/*.msg")]:
        queue = path.name.partition(".")[2].removesuffix(".msg")
        found.setdefault(queue, []).append(path)
    return found


def test_the_app_registers_the_two_gage_tasks_and_the_worker_serves_only_them(
        worker_bed, worker_options):
    app = gage_app(worker_bed)
    assert app is app_for(worker_bed.settings())  # made once per settings
    assert {EXEC_TASK, FINALIZE_TASK} <= set(app.tasks)
    assert app.tasks[EXEC_TASK].run.__name__ == "exec_task"
    assert app.tasks[FINALIZE_TASK].run.__name__ == "finalize_task"
    assert "celery.accumulate" in app.tasks  # Celery's built-ins are registered...
    with inprocess_worker(app, *worker_options) as worker:
        assert type(worker.consumer).__name__ == "GuardedConsumer"
        assert set(worker.consumer.strategies) == {EXEC_TASK, FINALIZE_TASK}  # ...not served


def test_exec_routes_to_the_queue_and_finalize_to_the_finalize_queue(worker_bed, worker_options):
    # Queue names of this test alone: Celery publishes to each queue's own
    # exchange, and kombu binds a queue once per process (see inprocess_worker).
    cpu = f"cpu-{uuid.uuid4().hex[:8]}"
    app = gage_app(worker_bed, queue=cpu, finalize_queue=f"{cpu}-finalize")
    router = app.amqp.router
    assert router.route({}, EXEC_TASK)["queue"].name == cpu
    assert router.route({}, FINALIZE_TASK)["queue"].name == f"{cpu}-finalize"
    run_id = "01234567-89ab-4def-8123-456789abcdef"  # no such run: nothing consumes it here
    app.send_task(EXEC_TASK, args=[run_id])
    app.send_task(FINALIZE_TASK, args=[run_id])
    sent = messages(app)
    assert {queue: len(paths) for queue, paths in sent.items()} == {cpu: 1, f"{cpu}-finalize": 1}
    assert json.loads(sent[cpu][0].read_text())["headers"]["task"] == EXEC_TASK
    assert json.loads(sent[f"{cpu}-finalize"][0].read_text())["headers"]["task"] == FINALIZE_TASK

    with inprocess_worker(app, *worker_options) as worker:
        consumed = {queue.name for queue in worker.consumer.task_consumer.queues}
        # a worker without -Q consumes both, and its node's own queue (placed runs)
        assert consumed == {cpu, f"{cpu}-finalize", node_queue(worker.hostname)}


def hostile(task: str, body: Any, **headers: Any) -> dict[str, Any]:
    """A message like the submitter's, with `body` and `headers` changed."""
    task_id = "7b0ac6e1-26c5-4c06-9e3a-3c1b1b0f7d52"
    _, good_headers, properties = task_message(task, ["x"], task_id)
    return {"body": json.dumps(body).encode(), "headers": {**good_headers, **headers},
            "content_type": "application/json", "content_encoding": "utf-8", **properties}


HOSTILE = {
    "a built-in task": hostile("celery.accumulate", [[1, 2], {}, EMBED]),
    "a path for a run id": hostile(EXEC_TASK, [["../../etc"], {}, EMBED]),
    "a time limit": hostile(EXEC_TASK, [["01234567-89ab-4def-8123-456789abcdef"], {}, EMBED],
                            timelimit=[4, 3]),
    "a callback": hostile(EXEC_TASK, [["01234567-89ab-4def-8123-456789abcdef"], {},
                                      {**EMBED, "callbacks": [{"task": "celery.accumulate"}]}]),
}


def test_the_consumer_guard_rejects_hostile_messages_and_serves_on(
        worker_bed, worker_options, caplog):
    app = gage_app(worker_bed)
    caplog.set_level(logging.INFO)
    with inprocess_worker(app, *worker_options):
        with app.connection_for_write() as conn:
            producer = Producer(conn)
            for message in HOSTILE.values():
                producer.publish(exchange="", routing_key="gage", retry=False, **message)
        rejected = lambda: [r for r in caplog.records if r.name == "gage_worker.consumer_guard"]  # noqa: E731
        wait_for(lambda: len(rejected()) == len(HOSTILE), 10, "every hostile message rejected")
        run = worker_bed.submit(worker_bed.stage())
        assert worker_bed.wait_status([run]) == {run.id: "completed"}
    lines = [r.getMessage() for r in rejected()]
    assert all(line.startswith("rejected message: task ") for line in lines), lines
    assert any("task 'celery.accumulate' is not served here" in line for line in lines)
    assert any("argument '../../etc' is not a run id" in line for line in lines)
    assert any("header 'timelimit' is [4, 3], not [None, None]" in line for line in lines)
    assert any("body " in line and "is not [[run id], {}, no embeds]" in line for line in lines)
    assert "gage" not in messages(app)  # rejected without requeue; the good one acked
    assert len(worker_bed.executions(run)) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                and r.name != "gage_worker.consumer_guard"]


class FlowerView:
    """Task states as Flower keeps them: events from the broker into a `celery.events.State`."""

    def __init__(self, app: GageApp):
        self.app = app
        self.state = State()
        self.ready = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        with self.app.connection_for_read() as conn:
            receiver = self._receiver = self.app.events.Receiver(
                conn, handlers={"*": self.state.event})
            receiver.on_consume_ready = lambda *args, **kwargs: self.ready.set()
            for _ in receiver.consume(limit=None, safety_interval=0.1):
                pass  # until should_stop

    def __enter__(self) -> FlowerView:
        self._thread.start()
        assert self.ready.wait(10), "the event receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def tasks(self, name: str) -> dict[str, Any]:
        """Run id -> the task `name` of that run, as Flower lists it.

        Flower shows the name and args the submitter put in the message for
        monitors: `gage.exec count (<run name>)`, `['<run id>'] <flags>`.
        """
        found = {}
        for _, task in self.state.itertasks():
            if task.name and task.name.split(" ")[0] == name and task.args:
                found[re.match(r"\['([0-9a-f-]+)'\]", task.args)[1]] = task
        return found


def test_flower_sees_a_failed_run_as_a_failure_and_a_completed_one_as_a_success(
        worker_bed, worker_options):
    app = gage_app(worker_bed)
    app.finalizes = False  # finalize goes through the finalize queue: both tasks show
    failing = worker_bed.stage_script("import sys; sys.exit(3)", cmd=["python", "script.py"])
    ok = worker_bed.stage()
    with FlowerView(app) as flower, inprocess_worker(app, *worker_options,
                                                     task_events=True) as worker:
        worker_bed.submit(failing)
        worker_bed.submit(ok)
        assert worker_bed.wait_status([failing, ok]) == {failing.id: "error", ok.id: "completed"}
        wait_for(lambda: len(flower.tasks(FINALIZE_TASK)) == 2
                 and all(t.state == "SUCCESS" for t in flower.tasks(FINALIZE_TASK).values()),
                 10, "both finalize tasks to succeed")
    executed = flower.tasks(EXEC_TASK)
    assert executed[failing.id].state == "FAILURE"
    assert executed[failing.id].exception == repr(
        RunFailed(f"run {failing.id} error (exit 3): exit 3"))
    assert executed[ok.id].state == "SUCCESS"
    assert executed[ok.id].worker.hostname == worker.hostname
    for run in (failing, ok):
        assert executed[run.id].name == f"{EXEC_TASK} {run.opref.op_name} ({run.name})"
        assert flower.tasks(FINALIZE_TASK)[run.id].state == "SUCCESS"


def test_a_staged_run_is_executed_then_finalized_by_the_inprocess_worker(
        worker_bed, worker_options, caplog):
    """submit -> gage.exec (a real keeper runs it) -> finalized in the same task."""
    app = gage_app(worker_bed)
    caplog.set_level(logging.INFO)
    run = worker_bed.stage()
    with inprocess_worker(app, *worker_options):
        worker_bed.submit(run)
        assert worker_bed.wait_status([run]) == {run.id: "completed"}
    (execution,) = worker_bed.executions(run)
    assert execution["worker_env"] == []  # the keeper scrubbed the worker's settings
    record = read_record(run)
    assert record.state is RunState.COMPLETED and record.exit_code == 0
    assert record.host == socket.gethostname() and record.pid == execution["pid"]
    logged = [r.getMessage() for r in caplog.records if r.name == "gage_worker.tasks"]
    assert f"run {run.id}: finalize" in logged[0], logged
    assert messages(app) == {}  # every message acked


def test_settings_refuse_a_memory_broker():
    """Why the in-process tests use the embedded broker, not `memory://`."""
    from gage_queue.errors import SettingsError

    with pytest.raises(SettingsError, match="memory://"):
        Settings(broker_url="memory://").validated()


def test_pytest_celery_is_loaded_and_needs_no_docker_engine(pytestconfig):
    """Its plugin imports Docker-based fixtures (docker, pytest_docker_tools) but starts nothing."""
    plugin = pytestconfig.pluginmanager.get_plugin("celery")
    assert plugin is not None and plugin.__name__ == "pytest_celery.plugin"
