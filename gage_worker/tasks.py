"""The Celery tasks `gage.exec` and `gage.finalize`.

Each carries one argument, a run id, which the worker resolves under its
own runs dir. A message whose argument is not a run id of that runs dir
is logged and acked; nothing runs (`gage delete` of a queued run ends here).

`gage.exec` hands the run to a keeper (`launch.run_keeper`) and waits for
it; the keeper owns the run, its lock and its processes from then on.
When the keeper recorded an exit, a worker that takes finalize work (it
consumes the finalize queue) finalizes the run right there: sending
itself a message would cost a broker round trip and a second task per
run. A worker that does not (a GPU worker, by default) sends finalize to
the finalize queue. Either way finalize is crash-safe and redone by the
next delivery or by reconcile (`finalize`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import Task
from celery.exceptions import Reject

from gage_queue.broker.messages import EXEC_TASK, FINALIZE_TASK
from gage_queue.broker.send import send_finalize
from gage_queue.errors import BrokerUnavailable
from gage_queue.settings import Settings
from gage_queue.states import ended_state
from gage_runs.errors import RunLookupError
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run
from gage_worker.finalize import finalize_phase
from gage_worker.keeper.job import Verdict
from gage_worker.launch import run_keeper

if TYPE_CHECKING:
    from gage_worker.celery_app import GageApp

log = logging.getLogger(__name__)


class RunFailed(Exception):
    """The run did not complete: the exec task ends in FAILURE (Flower, events), no traceback."""


def register_tasks(app: GageApp) -> None:
    """Register both tasks on `app`."""
    app.task(name=EXEC_TASK, bind=True, throws=(RunFailed,))(exec_task)
    app.task(name=FINALIZE_TASK, bind=True)(finalize_task)


def exec_task(task: Task, run_id: str) -> None:
    """Execute a run through its keeper, then send its finalize task."""
    app: GageApp = task.app
    settings = app.settings
    run = _resolve(settings, run_id, "exec")
    if run is None:
        return
    outcome = run_keeper(run.id, settings, node=task.request.hostname,
                         slots=getattr(app, "slots", None))
    log.info("run %s: %s%s", run.id, outcome.verdict.value,
             f": {outcome.message}" if outcome.message else "")
    if outcome.verdict is Verdict.CANNOT_START:
        _stop_consuming(task, run, outcome.message)
        raise Reject(outcome.message, requeue=True)
    if outcome.verdict is Verdict.FINALIZE:
        _finalize_owed(app, run)
        if outcome.exit_code not in (0, None):
            state = ended_state(outcome.exit_code)
            raise RunFailed(f"run {run.id} {state} (exit {outcome.exit_code}): {outcome.message}")


def _finalize_owed(app: GageApp, run: Run) -> None:
    """Finalize the run here if this worker takes finalize work, else send it to a worker that does."""
    if app.finalizes:
        finalize_phase(run, app.settings)
        return
    try:
        send_finalize(run.id, app.settings)
    except BrokerUnavailable as e:
        log.error("run %s: %s; reconcile will finalize it", run.id, e)


def finalize_task(task: Task, run_id: str) -> None:
    """Finalize an exited (or lost, or cancelled) run."""
    settings: Settings = task.app.settings
    run = _resolve(settings, run_id, "finalize")
    if run is not None:
        finalize_phase(run, settings)


def _stop_consuming(task: Task, run: Run, why: str) -> None:
    """This worker cannot start runs: stop taking them; the run stays queued."""
    queue = (task.request.delivery_info or {}).get("routing_key") or task.app.settings.queue
    log.error("run %s left queued: %s; this worker stops taking runs from %s",
              run.id, why, queue)
    try:
        task.app.control.cancel_consumer(queue, destination=[task.request.hostname])
    except Exception as e:  # the control channel is best effort; say so, once
        log.error("cannot stop consuming %s: %s", queue, e)


def _resolve(settings: Settings, run_id: object, phase: str) -> Run | None:
    """The run, or None (logged once, the message acked): no such run here, or deleted."""
    try:
        return resolve_run_id(settings.require_runs_dir(), run_id)
    except RunLookupError as e:
        log.error("rejected %s message: %s", phase, e)
        return None
