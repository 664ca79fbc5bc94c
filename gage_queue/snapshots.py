"""A run's state as any host sees it, and cancel requests (Celery-free).

`snapshot` reads what `states.derive_state` needs from a meta dir, once;
`queue_state` adds where the run runs or ran and why it ended. Every
command, the worker, reconcile and the beat read states through here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gage_queue.locks import is_locked, read_record
from gage_queue.queue_meta import queue_path, write_cancel
from gage_queue.record import RunRecord
from gage_queue.states import GageFacts, RunSnapshot, RunState, derive_state
from gage_runs.meta import meta_exit_code, run_meta_path
from gage_runs.types import Run


def gage_facts(run: Run) -> GageFacts:
    def exists(*parts: str) -> bool:
        return os.path.exists(run_meta_path(run, *parts))

    return GageFacts(
        exit_code=meta_exit_code(run),
        proc_lock=exists("proc", "lock"),
        staged=exists("staged"),
        started=exists("started"),
        initialized=exists("initialized"),
    )


def snapshot(run: Run, record: RunRecord | None = None, *, locked: bool | None = None
             ) -> RunSnapshot:
    """The run's snapshot; `record`/`locked` when the caller holds the lock."""
    return _read(run, record, locked)[0]


def _read(run: Run, record: RunRecord | None, locked: bool | None
          ) -> tuple[RunSnapshot, RunRecord | None]:
    """The snapshot and the record it was made from, each file read once."""
    submitted = os.path.exists(queue_path(run, "submitted"))
    if submitted and record is None:
        record = read_record(run)
    if locked is None:
        locked = submitted and record is not None and is_locked(run)
    state = RunSnapshot(
        gage=gage_facts(run),
        submitted=submitted,
        committed=record.state if record else None,
        locked=locked,
    )
    return state, record if submitted else None


def run_state(run: Run) -> RunState:
    return derive_state(snapshot(run))


@dataclass(frozen=True)
class QueueState:
    """A run's state with its record: where it runs or ran, and why it ended."""

    state: RunState
    record: RunRecord | None = None

    @property
    def status(self) -> str:
        return self.state.value

    @property
    def host(self) -> str | None:
        return self.record.host if self.record else None

    @property
    def node(self) -> str | None:
        return self.record.node if self.record else None

    @property
    def reason(self) -> str | None:
        if self.record is None:
            return None
        if self.state is RunState.FINALIZE_FAILED:
            return f"finalize failed: {self.record.finalize_error}"
        if self.state is RunState.LOST:
            return "keeper gone"
        return self.record.detail


def queue_state(run: Run) -> QueueState:
    state, record = _read(run, None, None)
    return QueueState(derive_state(state), record)


def queue_status(run: Run) -> str:
    """The run's state as a string: Gage's status, or a queue state."""
    return run_state(run).value


def request_cancel(run: Run, settings: object | None = None) -> str:
    """Ask for a run to stop; its state afterwards.

    Writes the cancel request (who and from where). A running run's keeper
    sees it within half a second and stops the run. A queued run whose
    lock is free is finalized as terminated at once; one whose keeper is
    waiting for a slot is ended by that keeper.
    """
    state = run_state(run)
    if state not in (RunState.QUEUED, RunState.RUNNING, RunState.PENDING):
        return state.value
    write_cancel(run)
    if state is RunState.QUEUED:
        from gage_worker.finalize import cancel_queued  # the run lifecycle, only when cancelling

        cancel_queued(run)
    return run_state(run).value

