"""The Celery app: its settings (design §4) and its two tasks.

Its consumer is `consumer_guard.GuardedConsumer`: a worker serves `gage.exec` and
`gage.finalize` only, and only messages exactly as the submitter sends them.

`celery -A gage_worker ...` finds the app configured from the environment
(`gage_worker.app`); `gage-worker` builds one from its own `Settings` with
`app_for`. Sending needs no app: the enqueue API publishes the same
messages with kombu (`messages`), on the queues and settings defined here.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from celery import Celery

from gage_queue.broker.config import (
    CONNECT_TIMEOUT,
    broker_transport,
    broker_url,
    transport_options,
)
from gage_queue.broker.messages import EXEC_TASK, FINALIZE_TASK, SERIALIZER, task_queue
from gage_queue.settings import Settings


class GageApp(Celery):
    """A Celery app that knows its gage-queue settings."""

    settings: Settings
    slots: int | None = None  # run slots of this node (see worker.run_worker)
    finalizes: bool = False  # it consumes the finalize queue: it finalizes its own runs
    node_name: str | None = None  # this worker's node name (`NodeStep`)
    node_queue: str | None = None  # the queue only this node consumes: placed runs
    node_fd: int | None = None  # the node name's lock, held while the worker lives
    wakeup: threading.Event | None = None  # set when a placement pass is due


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for gage-queue (design §4)."""
    return {
        "broker_url": broker_url(settings),
        "broker_transport": broker_transport(settings),
        "broker_transport_options": transport_options(settings),
        # Messages are JSON only: a task carries a run id, nothing to pickle.
        "task_serializer": SERIALIZER,
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # The runs dir is the truth; task results are never stored.
        "task_ignore_result": True,
        "result_backend": None,
        # Ack after the phase ends, and redeliver if the pool child dies: the
        # run lock and the run's state make any redelivery harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": CONNECT_TIMEOUT,
        # Do not kill running phases when the broker connection drops: that
        # would kill the pool child and orphan the run process. The run goes
        # on; its message is redelivered and acked as a no-op (run locked or
        # started), so keeping the task costs nothing.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Every message is checked before Celery reads it; only the two
        # gage tasks are served (gage_worker.consumer_guard).
        "worker_consumer": "gage_worker.consumer_guard:GuardedConsumer",
        "task_default_queue": settings.queue,
        # What `celery -A gage_worker worker` consumes without -Q: both queues.
        "task_queues": [task_queue(settings.queue), task_queue(settings.finalize_queue)],
        "task_routes": {
            EXEC_TASK: {"queue": settings.queue},
            FINALIZE_TASK: {"queue": settings.finalize_queue},
        },
    }


def make_app(settings: Settings) -> GageApp:
    """A configured app: the two tasks, and the worker's reconcile step."""
    from gage_worker.node import NodeStep
    from gage_worker.reconcile import ReconcileStep
    from gage_worker.tasks import register_tasks

    app = GageApp("gage_worker", set_as_current=False)
    app.settings = settings
    app.conf.update(celery_config(settings))
    register_tasks(app)
    app.steps["worker"].add(ReconcileStep)
    app.steps["worker"].add(NodeStep)
    return app


@functools.lru_cache(maxsize=8)
def app_for(settings: Settings) -> GageApp:
    """The app of these settings, made once per process."""
    return make_app(settings)


def env_app() -> GageApp:
    """The app configured from the environment (for `celery -A gage_worker`)."""
    return app_for(Settings.from_env())
