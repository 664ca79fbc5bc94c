"""`gage-submit queue`: hand runs staged by `gage run --stage` to the queue.

A run staged by Gage has no `queue/submitted`; queueing it records the
submission and sends its exec task (`gage_queue.broker.send.Submitter`),
after which it is the queue's like any submitted run. Every run is
checked before any is queued.
"""

from __future__ import annotations

from gage_queue.queue_meta import read_submitted
from gage_queue.snapshots import queue_status
from gage_runs.meta import meta_timestamp
from gage_runs.status import run_status
from gage_runs.types import Run

from .errors import SubmitError


def check_queueable(runs: list[Run]) -> None:
    """SubmitError naming the first run that is not staged outside the queue."""
    for run in runs:
        label = f"run {run.name} ({run.id[:8]})"
        if read_submitted(run) is not None:
            raise SubmitError(
                f"{label} was queued already (it is {queue_status(run)}): queue takes runs"
                " staged with `gage run --stage`; use `gage-submit rerun` to run it again"
            )
        status = run_status(run)
        if status != "staged" or meta_timestamp(run, "started") is not None:
            raise SubmitError(
                f"{label} is {status}, not staged: queue takes runs staged with"
                " `gage run --stage` and not started"
            )
