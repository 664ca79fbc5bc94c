"""Asking for runs to stop, from any host: the request and nothing else.

`request_cancel` writes who asks into the run's `queue/cancel` and, for a
run that has not started, a marker in `<runs>/.gage-queue/cancel/`. The
worker side acts on both: a running run's keeper sees the request within
half a second and stops the run; a queued run is ended, without running,
by the keeper its message reaches or by any worker's cancel sweep, which
reads the markers about once a second (`gage_worker.cancels`). A laptop
runs no keeper or finalize code.
"""

from __future__ import annotations

import contextlib
import os

from gage_queue.layout import cancel_marker, cancel_requests_dir
from gage_queue.queue_meta import write_cancel
from gage_queue.snapshots import read_queue_state
from gage_queue.states import CANCELLABLE, WAITING_TO_START, RunState
from gage_runs.fsmode import touch_shared
from gage_runs.names import is_run_id
from gage_runs.types import Run


def request_cancel(run: Run) -> RunState:
    """Ask for `run` to stop; its state as it was.

    Nothing is written unless the queue owns the run (Gage's own runs have
    no keeper to act on a request) and its state is cancellable.
    """
    current = read_queue_state(run)
    state = current.state
    if current.record is None or state not in CANCELLABLE:
        return state
    write_cancel(run)
    if state in WAITING_TO_START:
        touch_shared(cancel_marker(run.runs_dir, run.id))
    return state


def requested_ids(runs_dir: str) -> list[str]:
    """The ids of runs with a cancel marker (one listing)."""
    try:
        names = os.listdir(cancel_requests_dir(runs_dir))
    except FileNotFoundError:
        return []
    return sorted(name for name in names if is_run_id(name))


def drop_request(runs_dir: str, run_id: str) -> None:
    """Remove a marker once its run is no longer waiting to start."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(cancel_marker(runs_dir, run_id))
