"""The cancel sweep: end cancelled runs that have not started, about once a second.

A cancel request for a queued run (`gage_queue.cancel`) leaves a marker;
every worker lists the markers and finalizes each such run as terminated
if its lock is free (`finalize.finalize_phase`, which re-checks the
record and the request under the lock). A run whose keeper holds the lock
(waiting for a slot) is ended by that keeper; a marker is dropped once
its run is no longer waiting to start. Several workers sweeping at once
is safe: the run lock lets one act, the others find nothing to do.
"""

from __future__ import annotations

import logging

from gage_queue.cancel import drop_request, requested_ids
from gage_queue.settings import Settings
from gage_queue.snapshots import run_state
from gage_queue.states import NOT_STARTED, WAITING_TO_START
from gage_runs.errors import RunLookupError
from gage_runs.runs_dir import resolve_run_id
from gage_worker.finalize import finalize_phase

log = logging.getLogger(__name__)


def sweep_cancels(settings: Settings) -> int:
    """Act on every cancel marker; how many runs this pass ended."""
    runs_dir = settings.require_runs_dir()
    ended = 0
    for run_id in requested_ids(runs_dir):
        try:
            run = resolve_run_id(runs_dir, run_id)
        except RunLookupError:
            drop_request(runs_dir, run_id)
            continue
        state = run_state(run)
        if state in NOT_STARTED and finalize_phase(run, settings) is not None:
            ended += 1  # finalized (or owed a finalize): no longer waiting to start
            drop_request(runs_dir, run_id)
        elif state not in WAITING_TO_START:
            drop_request(runs_dir, run_id)
    return ended
