"""Sending tasks: submit staged runs (one, or a batch), re-send one, send finalize.

Sends use one broker connection per process and thread (a worker's pool
child sends a finalize per run; a submitter many exec tasks), with a short
connect timeout and no retry loop: a send that fails on the kept
connection is tried once on a fresh one, then fails with
`BrokerUnavailable` within a few seconds instead of hanging. The runs dir
records the intent first (`queue/submitted`), so a run whose send failed
stays queued and reconcile sends it later.

Sending imports no Celery: messages are Celery's, published with kombu
(`messages`), so a submitter starts fast. To the embedded broker (the
default) a session writes message files itself, and to Redis it pushes
them itself (`redis_publish`): a submitter imports no kombu and no
redis-py for either, only what its broker needs when it first sends.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from gage_queue import active
from gage_queue.broker.config import (
    CONNECT_TIMEOUT,
    broker_url,
    is_embedded,
    prepare_broker,
    transport_options,
)
from gage_queue.broker.messages import (
    DISPLAY_LIMIT,
    EXEC_TASK,
    FINALIZE_TASK,
    TaskDisplay,
    broker_connection,
    publish_task,
    put_embedded_task,
    task_envelope,
)
from gage_queue.errors import BrokerUnavailable
from gage_queue.locks import create_lock_file
from gage_queue.queue_meta import (
    create_cancel_file,
    read_submitted,
    write_enqueued,
    write_submitted,
)
from gage_queue.record import RunRecord
from gage_queue.requests import DEFAULT_REQUEST, RunRequest
from gage_queue.settings import Settings, check_queue_name, redact_url
from gage_queue.states import RunState, waiting_words
from gage_queue.waiting import add_waiting, waiting_from
from gage_runs.errors import GageRunsError
from gage_runs.fsmode import walk_once
from gage_runs.meta import meta_config
from gage_runs.names import run_name_for_id
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run

if TYPE_CHECKING:
    from kombu import Connection

    from gage_queue.broker.redis_publish import RedisConnection, RedisTarget

    Link = Connection | RedisConnection  # kombu's, or ours to Redis

T = TypeVar("T")
_SEND_ERRORS = (OSError, ConnectionError, TimeoutError)

_local = threading.local()


def _connections() -> dict[Settings, Link]:
    """This thread's kept connections (none after a fork: never share a socket)."""
    if getattr(_local, "pid", None) != os.getpid():
        _local.pid = os.getpid()
        _local.connections = {}
    return _local.connections


class BrokerSession:
    """The broker connection of this process and thread, for sends and queue sizes.

    The embedded broker needs no connection: its messages folder is
    written and listed directly (`messages.put_embedded_task`), as its
    kombu transport would. Redis gets a connection of `redis_publish`
    (kombu's for a URL that module leaves to kombu, such as `rediss://`);
    other brokers a kombu connection.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._conn: Link | None = None
        self._folder: str | None = None
        self._redis: RedisTarget | None = None
        if is_embedded(settings):
            self._folder = transport_options(settings)["data_folder_out"]
        elif broker_url(settings).startswith("redis"):
            from gage_queue.broker import redis_publish

            self._redis = redis_publish.target(broker_url(settings))

    def __enter__(self) -> BrokerSession:
        prepare_broker(self.settings)
        if self._folder is None:
            self._conn = self._connect(fresh=False)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._conn = None

    def send(self, task_name: str, run_id: str, queue: str, run: Run | None = None) -> None:
        """Send a task whose only argument is a run id (named for monitors: `task_display`).

        `run` is the run of that id, if the caller has it at hand.
        """
        display = task_display(task_name, run_id, self.settings.runs_dir, run)
        if self._folder is not None:
            self._in_folder(
                lambda folder: put_embedded_task(folder, task_name, [run_id], queue, display))
        elif self._redis is not None:
            _, message = task_envelope(task_name, [run_id], queue, display)
            self._call(lambda conn: conn.publish(queue, message))
        else:
            self._call(lambda conn: publish_task(conn, task_name, [run_id], queue, display))

    def queue_size(self, queue: str) -> int:
        """Messages of `queue` the broker holds: waiting, and (embedded) claimed, unacked.

        A claimed message is on its way to a keeper: counting it keeps
        reconcile from re-sending a run a worker has taken but not started.
        """
        if self._folder is not None:
            return self._in_folder(lambda folder: _embedded_count(folder, queue))
        if self._redis is not None:
            return self._call(lambda conn: conn.queue_size(queue))

        def size(conn: Connection) -> int:
            channel = conn.channel()
            try:
                return channel.queue_declare(queue=queue, passive=True).message_count
            except conn.channel_errors:
                return 0  # no such queue (Redis drops empty ones)
            finally:
                channel.close()

        return self._call(size)

    def _in_folder(self, fn: Callable[[str], T]) -> T:
        """`fn(messages folder)`, an OSError reported as the folder unreachable."""
        assert self._folder is not None
        try:
            return fn(self._folder)
        except OSError as e:
            raise self._unavailable(OSError(e.errno, e.strerror, self._folder)) from None

    def _call(self, fn: Callable[[Link], T]) -> T:
        """`fn(connection)`; on a connection error, once more on a fresh one."""
        assert self._conn is not None, "use BrokerSession as a context manager"
        try:
            return fn(self._conn)
        except Exception as e:
            if not self._is_send_error(e):
                raise
        self._conn = self._connect(fresh=True)
        try:
            return fn(self._conn)
        except Exception as e:
            if not self._is_send_error(e):
                raise
            self._drop()
            raise self._unavailable(e) from None

    def _is_send_error(self, error: Exception) -> bool:
        """Whether `error` says the broker could not be reached (else it is a bug)."""
        if self._redis is not None:  # every error of redis_publish is a ConnectionError
            return isinstance(error, _SEND_ERRORS)
        from kombu.exceptions import OperationalError

        assert self._conn is not None
        return isinstance(error, (*_SEND_ERRORS, OperationalError, *self._conn.connection_errors))

    def _connect(self, *, fresh: bool) -> Link:
        if fresh:
            self._drop()
        connections = _connections()
        conn = connections.get(self.settings)
        if conn is None and self._redis is None:
            conn = broker_connection(self.settings)  # connects when ensured
        try:
            if self._redis is None:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=5)
            elif conn is None:
                from gage_queue.broker.redis_publish import RedisConnection

                conn = RedisConnection(self._redis, CONNECT_TIMEOUT)  # connects, or raises
        except Exception as e:
            connections.pop(self.settings, None)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            raise self._unavailable(e) from None
        connections[self.settings] = conn
        return conn

    def _drop(self) -> None:
        conn = _connections().pop(self.settings, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _unavailable(self, error: BaseException) -> BrokerUnavailable:
        url = redact_url(broker_url(self.settings))
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        return BrokerUnavailable(f"cannot reach the broker at {url}: {detail}")


def task_display(task_name: str, run_id: str, runs_dir: str | None,
                 run: Run | None = None) -> TaskDisplay:
    """How Flower and Celery's logs show the task: op, run name, and its config.

    `gage.exec train (gidik-livih)` and `['<id>'] batch=32 lr=0.01`; a run
    that cannot be read is shown by its id alone.
    """
    try:
        if run is None or run.id != run_id:
            run = resolve_run_id(runs_dir or "", run_id)
        config = meta_config(run)
    except (GageRunsError, OSError):
        return TaskDisplay()
    flags = " ".join(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
                     for name, value in sorted(config.items()))
    return TaskDisplay(
        shadow=_printable(f"{task_name} {run.opref.op_name} ({run.name})"),
        argsrepr=_printable(f"{[run_id]!r} {flags}".rstrip()),
    )


def _printable(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= DISPLAY_LIMIT else text[: DISPLAY_LIMIT - 3] + "..."


class Submitter:
    """Queues staged runs over one broker connection; `submit_run` for many runs.

    `record(run)` writes the submission (`queue/submitted`); `send(run)`
    sends its exec task and records the send (`queue/enqueued`); `submit`
    does both. Once the broker is found unreachable, `error` is set and
    later sends are not tried (one timeout each): their runs stay queued
    in the runs dir and reconcile sends them when the broker is back. Use
    it as a context manager, in one thread.
    """

    def __init__(
        self,
        *,
        queue: str | None = None,
        time_limit: float | None = None,
        schedule: str | None = None,
        settings: Settings | None = None,
        request: RunRequest = DEFAULT_REQUEST,
    ):
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time limit must be positive, not {time_limit!r}")
        self._settings = settings or Settings.from_env()
        self._queue = check_queue_name(queue) if queue else None
        self._time_limit = time_limit
        self._schedule = schedule
        self._request = request
        self._session: BrokerSession | None = None
        self.error: BrokerUnavailable | None = None

    def __enter__(self) -> Submitter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def submit(self, run: Run, request: RunRequest | None = None) -> bool:
        """Queue a staged run; True if its task was sent, False if left for reconcile."""
        self.record(run, request)
        return self.send(run)

    def record(self, run: Run, request: RunRequest | None = None) -> None:
        """Record the run's submission (with `request`, else the submitter's): from now on
        it is queued."""
        settings = settings_for_run(self._settings, run)
        record_submission(run, queue=self._queue or settings.queue,
                          time_limit=self._time_limit, schedule=self._schedule,
                          request=self._request if request is None else request)

    def send(self, run: Run) -> bool:
        """Send a recorded run's exec task; False if the broker is (found) unreachable."""
        if self.error is not None:
            return False
        settings = settings_for_run(self._settings, run)
        try:
            self._session_for(settings).send(EXEC_TASK, run.id, self._queue or settings.queue, run)
        except BrokerUnavailable as e:
            self.error = e
            self._close()
            return False
        write_enqueued(run)
        return True

    def _session_for(self, settings: Settings) -> BrokerSession:
        if self._session is None or self._session.settings != settings:
            self._close()
            self._session = BrokerSession(settings).__enter__()
        return self._session

    def _close(self) -> None:
        if self._session is not None:
            self._session.__exit__(None, None, None)
            self._session = None


def record_submission(
    run: Run, *, queue: str, time_limit: float | None = None, schedule: str | None = None,
    request: RunRequest = DEFAULT_REQUEST, attempt: int = 1, retry_of: str | None = None,
    retried: int = 0, preempted: int = 0,
) -> None:
    """Make a staged run the queue's: its index entry, `queue/submitted`, cancel and lock
    files, and last its waiting entry, which the scheduler places it by.

    The index entry comes first, so no crash part-way leaves an owed run
    out of the index (`active`); reconcile adds a missing waiting entry.
    """
    active.add(run)
    with walk_once():
        submitted = write_submitted(run, queue=queue, time_limit=time_limit, schedule=schedule,
                                    request=request, attempt=attempt, retry_of=retry_of,
                                    retried=retried, preempted=preempted)
        create_cancel_file(run)
        create_lock_file(run, _first_record(request))
    add_waiting(run.runs_dir, waiting_from(run.id, submitted))


def _first_record(request: RunRequest) -> RunRecord:
    """Queued, or waiting for the runs it depends on (`--after`)."""
    if request.first_state is RunState.QUEUED:
        return RunRecord()
    return RunRecord(state=RunState.WAITING,
                     detail=waiting_words([run_name_for_id(a) for a in request.after]))


def submit_run(
    run: Run,
    *,
    queue: str | None = None,
    time_limit: float | None = None,
    schedule: str | None = None,
    settings: Settings | None = None,
    request: RunRequest = DEFAULT_REQUEST,
) -> None:
    """Queue a staged run: record the submission, send exec, record the send.

    On BrokerUnavailable the run stays staged and queued in the runs dir;
    reconcile sends it once the broker is back.
    """
    with Submitter(
        queue=queue, time_limit=time_limit, schedule=schedule, settings=settings,
        request=request,
    ) as submitter:
        if submitter.submit(run):
            return
    raise BrokerUnavailable(
        f"{submitter.error}; run {run.id} stays staged and reconcile will send it"
    )


def submit_runs(
    runs: Iterable[Run],
    *,
    queue: str | None = None,
    time_limit: float | None = None,
    schedule: str | None = None,
    settings: Settings | None = None,
    request: RunRequest = DEFAULT_REQUEST,
) -> list[Run]:
    """Queue staged runs over one broker connection; the runs.

    Every run's submission is recorded first, then their exec tasks are
    sent in order. After the first BrokerUnavailable no more sends are
    tried; BrokerUnavailable is raised once the batch is done, saying how
    many runs stay queued for reconcile to send.
    """
    runs = list(runs)
    with Submitter(
        queue=queue, time_limit=time_limit, schedule=schedule, settings=settings,
        request=request,
    ) as submitter:
        for run in runs:
            submitter.record(run)
        unsent = sum(not submitter.send(run) for run in runs)
    if submitter.error is not None:
        raise BrokerUnavailable(
            f"{submitter.error}; {unsent} of {len(runs)} runs stay queued"
            " and reconcile sends them when the broker is back"
        )
    return runs


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
    return settings.with_overrides(runs_dir=run.runs_dir)


def send_finalize(run_id: str, settings: Settings) -> None:
    """Send the finalize task of an executed run."""
    with BrokerSession(settings) as session:
        session.send(FINALIZE_TASK, run_id, settings.finalize_queue)


def _embedded_count(messages: str, queue: str) -> int:
    """Messages of `queue` in the embedded broker's `messages/` and every claim folder."""
    from gage_queue.broker.embedded import claimed_folder  # kombu's transport: workers only

    suffix = f"{queue}.msg"  # counted as kombu's filesystem transport counts

    def count(folder: str) -> int:
        try:
            return sum(name.partition(".")[2] == suffix for name in os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return 0  # a claim folder removed as its consumer closed

    claimed = claimed_folder(os.path.dirname(messages))
    try:
        consumers = os.listdir(claimed)
    except FileNotFoundError:
        consumers = []
    return count(messages) + sum(count(os.path.join(claimed, name)) for name in consumers)
