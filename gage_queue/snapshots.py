"""Reading a run's state from its meta dir, as any host sees it.

The one reading behind every status a user or a decision sees: Gage's
facts (`gage_facts`), the record if the queue owns the run, the lock
probed only where the record leaves the state to it (`states.LOCK_DECIDES`),
then `states.derive_state`. The worker, reconcile, the beat and every
gage-submit command read states through here; `list` passes the facts it
has from one listing of the meta dir instead of a stat each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gage_queue.layout import SUBMITTED, queue_file
from gage_queue.locks import is_locked, read_record
from gage_queue.queue_meta import read_cancel
from gage_queue.record import RunRecord
from gage_queue.states import (
    LOCK_DECIDES,
    WAITING_TO_START,
    GageFacts,
    RunSnapshot,
    RunState,
    cancelled_words,
    derive_state,
)
from gage_runs.meta import meta_exit_code, run_meta_path
from gage_runs.types import Run


def gage_facts(run: Run) -> GageFacts:
    """What Gage's own files of the run say, a stat each."""
    def exists(*parts: str) -> bool:
        return os.path.exists(run_meta_path(run, *parts))

    exit_code = meta_exit_code(run)
    return GageFacts(
        exit_code=exit_code,
        proc_lock=exit_code is None and exists("proc", "lock"),
        staged=exists("staged"),
        started=exists("started"),
        initialized=exists("initialized"),
    )


def snapshot(run: Run, record: RunRecord | None, *, locked: bool) -> RunSnapshot:
    """The snapshot of a run whose lock the caller holds (or just probed)."""
    return RunSnapshot(
        gage=gage_facts(run),
        submitted=os.path.exists(queue_file(run, SUBMITTED)),
        committed=record.state if record else None,
        locked=locked,
    )


@dataclass(frozen=True)
class QueueState:
    """A run's state with its record: where it runs or ran, and why it ended."""

    state: RunState
    record: RunRecord | None = None
    cancel_by: str | None = None  # a cancel request not acted on yet: who asked

    @property
    def host(self) -> str | None:
        return self.record.host if self.record else None

    @property
    def node(self) -> str | None:
        return self.record.node if self.record else None

    @property
    def reason(self) -> str | None:
        """Why the run is where it is, in words; None if nothing to say."""
        if self.cancel_by is not None:
            return f"{cancelled_words(self.cancel_by or None)}: requested, not yet acted on"
        if self.record is None:
            return None
        if self.state is RunState.FINALIZE_FAILED:
            return f"finalize failed: {self.record.finalize_error}"
        if self.state is RunState.LOST:
            return "keeper gone"
        return self.record.detail


def read_queue_state(run: Run, facts: GageFacts | None = None, *,
                     submitted: bool | None = None) -> QueueState:
    """The run's state, from `facts` and `submitted` where the caller has them."""
    if facts is None:
        facts = gage_facts(run)
    if submitted is None:
        submitted = os.path.exists(queue_file(run, SUBMITTED))
    record = read_record(run) if submitted else None
    committed = record.state if record else None
    locked = committed in LOCK_DECIDES and is_locked(run)
    state = derive_state(RunSnapshot(facts, submitted, committed, locked))
    cancel_by = None
    if record is not None and state in WAITING_TO_START:
        request = read_cancel(run)
        cancel_by = None if request is None else str(request.get("by") or "")
    return QueueState(state, record if submitted else None, cancel_by)


def queue_state(run: Run) -> QueueState:
    return read_queue_state(run)


def run_state(run: Run) -> RunState:
    return read_queue_state(run).state
