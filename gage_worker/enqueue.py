"""Sending tasks: submit a staged run, re-send one, send finalize.

Every send opens its own connection with a short connect timeout and no
retry loop, so a broker that is down fails in a few seconds with
`BrokerUnavailable` instead of hanging. The runs dir records the intent
first (`queue/submitted`), so a run whose send failed stays queued and
reconcile sends it later.
"""

from __future__ import annotations

import os
from types import TracebackType

from kombu import Connection

from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run

from .broker import broker_url, prepare_broker
from .celery_app import EXEC_TASK, FINALIZE_TASK, GageApp, app_for
from .errors import BrokerUnavailable
from .queue_meta import read_submitted, write_enqueued, write_submitted
from .settings import Settings, check_queue_name, redact_url

SEND_ERRORS = (OSError, ConnectionError, TimeoutError)


class BrokerSession:
    """One broker connection for a batch of sends and queue size queries."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app: GageApp = app_for(settings)
        self._conn: Connection | None = None

    def __enter__(self) -> BrokerSession:
        prepare_broker(self.settings)
        conn = self.app.connection_for_write()
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=5)
        except Exception as e:
            conn.release()
            raise self._unavailable(e) from None
        self._conn = conn
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            self._conn.release()
            self._conn = None

    def send(self, task_name: str, run_id: str, queue: str) -> None:
        """Send a task whose only argument is a run id."""
        assert self._conn is not None, "use BrokerSession as a context manager"
        try:
            self.app.send_task(
                task_name, args=[run_id], queue=queue, connection=self._conn,
                retry=False, ignore_result=True,
            )
        except Exception as e:
            if not isinstance(e, (*SEND_ERRORS, *self._conn.connection_errors)):
                raise
            raise self._unavailable(e) from None

    def queue_size(self, queue: str) -> int:
        """Messages waiting in `queue` (not counting ones being worked on)."""
        assert self._conn is not None, "use BrokerSession as a context manager"
        channel = self._conn.channel()
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except self._conn.channel_errors:
            return 0  # no such queue (Redis drops empty ones)
        finally:
            channel.close()

    def _unavailable(self, error: BaseException) -> BrokerUnavailable:
        url = redact_url(broker_url(self.settings))
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        return BrokerUnavailable(f"cannot reach the broker at {url}: {detail}")


def submit_run(
    run: Run,
    *,
    queue: str | None = None,
    time_limit: float | None = None,
    schedule: str | None = None,
    settings: Settings | None = None,
) -> None:
    """Queue a staged run: record the submission, send exec, record the send.

    On BrokerUnavailable the run stays staged and queued in the runs dir;
    reconcile sends it once the broker is back.
    """
    settings = settings_for_run(settings or Settings.from_env(), run)
    queue = check_queue_name(queue or settings.queue)
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time limit must be positive, not {time_limit!r}")
    write_submitted(run, queue=queue, time_limit=time_limit, schedule=schedule)
    try:
        enqueue_run(run, queue, settings=settings)
    except BrokerUnavailable as e:
        raise BrokerUnavailable(
            f"{e}; run {run.id} stays staged and reconcile will send it"
        ) from None


def enqueue_run(
    run: Run | str, queue: str | None = None, *, settings: Settings | None = None
) -> None:
    """Send (or re-send) the exec task of a run (a Run, or an id in the runs dir).

    The queue defaults to the one the run was submitted to.
    """
    settings = settings or Settings.from_env()
    if isinstance(run, str):
        run = resolve_run_id(settings.require_runs_dir(), run)
    settings = settings_for_run(settings, run)
    queue = check_queue_name(queue or (read_submitted(run) or {}).get("queue") or settings.queue)
    with BrokerSession(settings) as session:
        session.send(EXEC_TASK, run.id, queue)
    write_enqueued(run)


def settings_for_run(settings: Settings, run: Run) -> Settings:
    """Settings with the run's own runs dir if none is configured.

    The embedded broker lives in the runs dir, so a submitter that found
    its runs dir from a project (not GAGE_RUNS) still reaches the worker.
    """
    if settings.runs_dir:
        return settings
    return settings.with_overrides(runs_dir=os.path.dirname(os.path.abspath(run.run_dir)))


def send_finalize(run_id: str, settings: Settings) -> None:
    """Send the finalize task of an executed run."""
    with BrokerSession(settings) as session:
        session.send(FINALIZE_TASK, run_id, settings.finalize_queue)
