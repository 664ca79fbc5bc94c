"""`gage-submit queue`: hand runs staged by `gage run --stage` to the queue.

A run staged by Gage has no `queue/submitted`; queueing it records the
submission and sends its exec task (`gage_queue.broker.send.Submitter`),
after which it is the queue's like any submitted run. Every run is
checked before any is queued.
"""

from __future__ import annotations

from gage_queue.queue_meta import read_submitted
from gage_queue.snapshots import gage_facts, run_state
from gage_queue.states import RunState
from gage_runs.types import Run

from .errors import SubmitError
from .progress import run_ref


def check_queueable(runs: list[Run]) -> None:
    """SubmitError naming the first run that is not staged outside the queue."""
    for run in runs:
        if read_submitted(run) is not None:
            raise SubmitError(
                f"run {run_ref(run)} was queued already (it is {run_state(run)}): queue takes"
                " runs staged with `gage run --stage`; use `gage-submit rerun` to run it again"
            )
        facts = gage_facts(run)  # Gage's own run: its state is Gage's status
        if facts.status() is not RunState.STAGED or facts.started:
            raise SubmitError(
                f"run {run_ref(run)} is {facts.status()}, not staged: queue takes runs staged"
                " with `gage run --stage` and not started"
            )
