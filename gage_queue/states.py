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
| waiting | either | waiting: for the runs it depends on (`--after`) |
| running | yes | running |
| running | no | lost: nothing of the run is alive and nobody recorded its exit |
| finalizing | either | finalizing: the exit is recorded, finalize is owed |
| completed / error / terminated | either | the same: every finalize step is done |
| finalize-failed | either | finalize-failed: retries are used up |

Every write of a record goes through `locks.RunLock.advance`, which
checks the move against `TRANSITIONS`, the one table of what may follow
what. The named sets below say what a state means to a decision; no module
compares state names of its own.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

from gage_queue.text import shown
from gage_runs.status import gage_status, status_for_exit_code


class RunState(str, enum.Enum):
    """Gage's statuses plus what the queue adds."""

    UNKNOWN = "unknown"
    PENDING = "pending"
    STAGED = "staged"
    QUEUED = "queued"
    WAITING = "waiting"
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

OWED = frozenset({RunState.QUEUED, RunState.WAITING, RunState.RUNNING, RunState.LOST,
                  RunState.FINALIZING})
"""The queue still owes the run something it will do by itself."""

INDEXED = OWED | {RunState.FINALIZE_FAILED}
"""A queue-owned run in one of these has an entry in the active index."""

FINISHED = ENDED | {RunState.FINALIZE_FAILED}
"""Nothing more will happen without a person."""

WAIT_DONE = FINISHED | {RunState.LOST}
"""What `wait` stops at: nothing of a lost run is alive, reconcile only
records it terminated."""

UNFINISHED = frozenset({RunState.PENDING, RunState.QUEUED, RunState.WAITING, RunState.RUNNING,
                        RunState.FINALIZING})
"""Its output and files may still change."""

WAITING_TO_START = frozenset({RunState.PENDING, RunState.QUEUED, RunState.WAITING})
"""The queue has it and nothing started it yet (pending: still being staged;
waiting: for the runs it depends on)."""

NOT_STARTED = frozenset({RunState.QUEUED, RunState.WAITING})
"""Committed states of a run nothing started: a cancel request ends it without running."""

CANCELLABLE = WAITING_TO_START | {RunState.RUNNING}
"""A cancel request stops it: before it starts, or while it runs."""

FAILED = frozenset({RunState.ERROR, RunState.TERMINATED, RunState.LOST,
                    RunState.FINALIZE_FAILED})
"""It did not complete: `wait` exits non-zero."""

LOCK_DECIDES = frozenset({RunState.RUNNING})
"""Committed states whose run is alive only while its lock is held: the only
ones for which a reader probes the lock (running, or else lost)."""

NOT_YET_RUN = frozenset({RunState.UNKNOWN, RunState.PENDING, RunState.STAGED})
"""Gage's own runs that nothing started: not the queue's to wait for."""


def parse_state(text: str) -> RunState:
    """The state named `text`; ValueError for anything else."""
    return RunState(text)


KILLED_EXIT = -9
"""The exit code recorded for a run whose processes were killed (SIGKILL):
a lost run, or one whose supervision failed."""

STOPPED_EXIT = -15
"""The exit code of a run stopped by a cancel, time limit or shutdown
(SIGTERM), also when its command exited >= 0 after the signal, and of a
run cancelled before it started."""


class Event(str, enum.Enum):
    """What moves a queue-owned run from one state to the next."""

    PLACE = "place"  # the scheduler chose its node and GPUs, or a keeper gave them back
    RELEASE = "release"  # every run it waited for ended as it asked: queued now
    DEPENDENCY_FAILED = "dependency-failed"  # a run it waited for did not complete
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
    (RunState.QUEUED, Event.PLACE): frozenset({RunState.QUEUED}),
    (RunState.QUEUED, Event.START): frozenset({RunState.RUNNING}),
    (RunState.QUEUED, Event.CANCEL): frozenset({RunState.FINALIZING}),
    (RunState.WAITING, Event.RELEASE): frozenset({RunState.QUEUED}),
    (RunState.WAITING, Event.CANCEL): frozenset({RunState.FINALIZING}),
    (RunState.WAITING, Event.DEPENDENCY_FAILED): frozenset({RunState.FINALIZING}),
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
    DEPENDENCY = "dependency"
    PREEMPTED = "preempted"

    def __str__(self) -> str:
        return self.value


def cancelled_words(by: str | None) -> str:
    """Why a cancelled run stopped: "cancelled by ann@laptop"."""
    return f"cancelled by {shown(by, 100)}" if by else "cancelled"


def before_start_words(stopped: str) -> str:
    """The words of a stop that came before the run's command started."""
    return f"{stopped} before it started"


def exit_words(exit_code: int) -> str:
    """How a command's exit reads: "completed", "exit 3", "killed by SIGKILL"."""
    if exit_code == 0:
        return "completed"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit {exit_code}"


def waiting_words(names: list[str]) -> str:
    """What a waiting run waits for: "waits for gidik-livih, mabob-hutij"."""
    shown_names = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"waits for {shown_names}"


def dependency_words(name: str, state: RunState) -> str:
    """Why a run ended without running: "dependency gidik-livih ended error"."""
    return f"dependency {name} ended {state.value}"


def lost_words(reason: EndReason, host: str) -> str:
    """Why a lost run ended: its keeper died, or its whole host was lost."""
    if reason is EndReason.WORKER_LOST:
        return f"its keeper on {host} died"
    return f"its host {host} was lost"


@dataclass(frozen=True)
class GageFacts:
    """What Gage's own files say (`run_format.md`, status derivation)."""

    exit_code: int | None = None
    proc_lock: bool = False
    staged: bool = False
    started: bool = False
    initialized: bool = False

    def status(self) -> RunState:
        """Gage's status (`gage_runs.status.gage_status`) as a state."""
        return RunState(gage_status(self.exit_code, proc_lock=self.proc_lock,
                                    staged=self.staged, initialized=self.initialized))


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
    if committed in NOT_STARTED:
        if snapshot.gage.started:  # `gage run --start` took it: Gage's run now
            return snapshot.gage.status()
        return committed if snapshot.gage.staged else RunState.PENDING
    if committed is RunState.RUNNING:
        return RunState.RUNNING if snapshot.locked else RunState.LOST
    return committed
