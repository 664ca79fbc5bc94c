"""A queued run's state as any host can see it, and cancel requests.

Statuses are Gage's (`run_status`) plus what the queue adds, for runs
submitted to the queue (`queue/submitted`):

- `queued`: staged and submitted, not started;
- `running`: the run lock is held (probed without taking it), with the
  heartbeat's host when there is one;
- `finalizing`: executed (`queue/exit`), finalize pending;
- `lost`: started, not stopped, lock free, no exit: its worker died.
  Reconcile (or the next delivery) finalizes it as terminated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gage_runs.meta import meta_exit_code, meta_timestamp
from gage_runs.status import run_status, status_for_exit_code
from gage_runs.types import Run

from .lock import is_locked
from .queue_meta import read_exit, read_heartbeat, read_submitted, write_cancel
from .settings import Settings

QUEUED = "queued"
RUNNING = "running"
FINALIZING = "finalizing"
LOST = "lost"


@dataclass(frozen=True)
class QueueState:
    """A run's status, and where it runs when it is running."""

    status: str
    host: str | None = None
    heartbeat: dict[str, Any] | None = None


def queue_state(run: Run) -> QueueState:
    """The run's status (see module doc), with the heartbeat's host if running."""
    exit_code = meta_exit_code(run)
    if exit_code is not None:
        return QueueState(status_for_exit_code(exit_code))
    if read_submitted(run) is None:
        return QueueState(run_status(run))
    if is_locked(run):
        heartbeat = read_heartbeat(run)
        return QueueState(RUNNING, (heartbeat or {}).get("host"), heartbeat)
    if read_exit(run) is not None:
        return QueueState(FINALIZING)
    if meta_timestamp(run, "started") is not None:
        return QueueState(LOST, None, read_heartbeat(run))
    if meta_timestamp(run, "staged") is not None:
        return QueueState(QUEUED)
    return QueueState(run_status(run))


def queue_status(run: Run) -> str:
    """Gage's status, or queued / running / finalizing / lost (see module doc)."""
    return queue_state(run).status


def running_host(run: Run) -> str | None:
    """The host running `run` (from its heartbeat), or None if not running."""
    state = queue_state(run)
    return state.host if state.status == RUNNING else None


def request_cancel(run: Run, settings: Settings | None = None) -> str:
    """Ask for a run to stop; returns its status afterwards.

    Writes the cancel marker. A running run gets SIGTERM from its
    supervisor within a second. A queued run is finalized as terminated at
    once when its lock is free (its message, when it arrives, finds it
    stopped); otherwise the worker that holds it sees the marker.
    """
    if meta_timestamp(run, "stopped") is not None:
        return queue_status(run)
    write_cancel(run)
    if queue_status(run) == QUEUED:
        from .runner import finalize_phase  # the run lifecycle, only when cancelling

        finalize_phase(run, settings or Settings.from_env())
    return queue_status(run)
