"""One model of a run's state: the enum, the transition table, the derivation.

A run's state is a pure function of a `RunSnapshot` of its meta dir
(`derive_state`). For runs the queue owns (`queue/submitted`), the
committed part of the state lives in the run record, the content of the
run's lock file (`record.RunRecord`), written only by whoever holds the
lock; the lock itself tells whether anything of the run may be alive.
Runs the queue does not own get Gage's own status.

| committed (record) | lock held | state |
|---|---|---|
| queued | either | queued (pending while not yet staged) |
| running | yes | running |
| running | no | lost: nothing of the run is alive and nobody recorded its exit |
| finalizing | either | finalizing: the exit is recorded, finalize is owed |
| completed / error / terminated | either | the same: every finalize step is done |
| finalize-failed | either | finalize-failed: retries are used up |

Every write of a record goes through `advance`, which checks the move
against `TRANSITIONS`, the one table of what may follow what.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gage_runs.status import status_for_exit_code


class RunState(str, enum.Enum):
    """Gage's statuses plus what the queue adds."""

    UNKNOWN = "unknown"
    PENDING = "pending"
    STAGED = "staged"
    QUEUED = "queued"
    RUNNING = "running"
    LOST = "lost"
    FINALIZING = "finalizing"
    FINALIZE_FAILED = "finalize-failed"
    COMPLETED = "completed"
    ERROR = "error"
    TERMINATED = "terminated"

    def __str__(self) -> str:
        return self.value


ENDED = frozenset({RunState.COMPLETED, RunState.ERROR, RunState.TERMINATED})
"""Finalized: nothing more happens to the run."""

ACTIVE = frozenset(
    {RunState.QUEUED, RunState.RUNNING, RunState.LOST, RunState.FINALIZING}
)
"""The queue still owes the run something it will do by itself."""

FINISHED = ENDED | {RunState.FINALIZE_FAILED}
"""Nothing more will happen without a person: what `wait` waits for."""


class Event(str, enum.Enum):
    """What moves a queue-owned run from one state to the next."""

    START = "start"  # its keeper starts the command
    NOT_STARTED = "not-started"  # this host could not start it: queued again
    CANCEL = "cancel"  # cancelled before it started
    EXIT = "exit"  # its keeper recorded the exit (or the supervision failed)
    RECOVER = "recover"  # found lost: recorded terminated, worker or host lost
    FINALIZE = "finalize"  # every finalize step is done
    FINALIZE_ERROR = "finalize-error"  # an attempt failed; retried later
    GIVE_UP = "give-up"  # the last allowed attempt failed
    RETRY = "retry"  # a person asks for finalize again


TRANSITIONS: dict[tuple[RunState, Event], frozenset[RunState]] = {
    (RunState.QUEUED, Event.START): frozenset({RunState.RUNNING}),
    (RunState.QUEUED, Event.CANCEL): frozenset({RunState.FINALIZING}),
    (RunState.RUNNING, Event.NOT_STARTED): frozenset({RunState.QUEUED}),
    (RunState.RUNNING, Event.EXIT): frozenset({RunState.FINALIZING}),
    (RunState.LOST, Event.RECOVER): frozenset({RunState.FINALIZING}),
    (RunState.FINALIZING, Event.FINALIZE): ENDED,
    (RunState.FINALIZING, Event.FINALIZE_ERROR): frozenset({RunState.FINALIZING}),
    (RunState.FINALIZING, Event.GIVE_UP): frozenset({RunState.FINALIZE_FAILED}),
    (RunState.FINALIZE_FAILED, Event.RETRY): frozenset({RunState.FINALIZING}),
}
"""(state, event) -> the states it may lead to. Nothing else is allowed."""


class IllegalTransition(Exception):
    """A move the table does not allow; a bug, or a run changed under us."""


def check_transition(state: RunState, event: Event, target: RunState) -> RunState:
    """`target`, if `event` may move a run from `state` to it."""
    if target not in TRANSITIONS.get((state, event), frozenset()):
        raise IllegalTransition(f"{event.value}: {state.value} -> {target.value}")
    return target


def ended_state(exit_code: int) -> RunState:
    """completed, error or terminated, as Gage reads an exit code."""
    return RunState(status_for_exit_code(exit_code))


class EndReason(str, enum.Enum):
    """Why a run ended: recorded with its exit code, shown by every command."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIME_LIMIT = "time-limit"
    WORKER_LOST = "worker-lost"
    HOST_LOST = "host-lost"
    SHUTDOWN = "shutdown"
    SUPERVISION_FAILED = "supervision-failed"
    CANNOT_START = "cannot-start"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class GageFacts:
    """What Gage's own files say (`run_format.md`, status derivation)."""

    exit_code: int | None = None
    proc_lock: bool = False
    staged: bool = False
    started: bool = False
    initialized: bool = False

    def status(self) -> RunState:
        if self.exit_code is not None:
            return ended_state(self.exit_code)
        if self.proc_lock:
            return RunState.RUNNING
        if self.staged:
            return RunState.STAGED
        if self.initialized:
            return RunState.PENDING
        return RunState.UNKNOWN


@dataclass(frozen=True)
class RunSnapshot:
    """Everything `derive_state` looks at, read once from a run's meta dir."""

    gage: GageFacts
    submitted: bool = False
    committed: RunState | None = None  # the record's state; None: no record
    locked: bool = False


def derive_state(snapshot: RunSnapshot) -> RunState:
    """The run's state: see the module's table."""
    committed = snapshot.committed
    if not snapshot.submitted or committed is None:
        return snapshot.gage.status()
    if committed is RunState.QUEUED:
        if snapshot.gage.started:  # `gage run --start` took it: Gage's run now
            return snapshot.gage.status()
        return RunState.QUEUED if snapshot.gage.staged else RunState.PENDING
    if committed is RunState.RUNNING:
        return RunState.RUNNING if snapshot.locked else RunState.LOST
    return committed
