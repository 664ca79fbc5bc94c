"""Queueing staged runs over one broker connection.

This is `gage_worker.enqueue.submit_run` for many runs: record the
submission in the run's meta (`queue/submitted`), send the exec task, record
the send (`queue/enqueued`). One connection serves a whole grid, and once
the broker is found unreachable the remaining runs are only recorded, not
tried again one timeout each: they stay queued in the runs dir and
reconcile sends them when the broker is back.

It writes the same queue meta files as `submit_run` through
`gage_worker.queue_meta`; a batch form of `submit_run` in gage_worker
would make this module unnecessary.
"""

from __future__ import annotations

import contextlib
from types import TracebackType

from gage_runs.types import Run
from gage_worker.enqueue import BrokerSession
from gage_worker.errors import BrokerUnavailable
from gage_worker.messages import EXEC_TASK
from gage_worker.queue_meta import write_enqueued, write_submitted
from gage_worker.settings import Settings


class Sender:
    """Use as a context manager; `error` is set once the broker is found down."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._stack = contextlib.ExitStack()
        self._session: BrokerSession | None = None
        self.error: BrokerUnavailable | None = None

    def __enter__(self) -> Sender:
        try:
            self._session = self._stack.enter_context(BrokerSession(self._settings))
        except BrokerUnavailable as e:
            self.error = e
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def submit(self, run: Run, queue: str, time_limit: float | None) -> bool:
        """Queue a staged run; True if its task was sent, False if left for reconcile."""
        write_submitted(run, queue=queue, time_limit=time_limit, schedule=None)
        if self._session is None:
            return False
        try:
            self._session.send(EXEC_TASK, run.id, queue)
        except BrokerUnavailable as e:
            self.error = e
            self._session = None
            self._stack.close()
            return False
        write_enqueued(run)
        return True
