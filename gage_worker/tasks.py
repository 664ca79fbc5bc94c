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
import socket
from typing import TYPE_CHECKING

from celery import Task

from gage_queue.broker.messages import EXEC_TASK, FINALIZE_TASK
from gage_queue.broker.send import send_finalize
from gage_queue.errors import BrokerUnavailable
from gage_queue.pool import request_drain
from gage_queue.settings import Settings
from gage_queue.states import ended_state
from gage_runs.errors import RunLookupError
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run
from gage_worker.finalize import finalize_phase
from gage_worker.keeper.job import Verdict
from gage_worker.launch import run_keeper
from gage_worker.scheduler import schedule

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
    """Execute a run placed on this node through its keeper, then finalize it.

    Only exec tasks from this node's own queue get here: one from a run
    queue (a submit's) asks for a placement pass, and the worker's consumer
    takes it before it reaches a pool process (`consumer_guard`).
    """
    app: GageApp = task.app
    settings = app.settings
    run = _resolve(settings, run_id, "exec")
    if run is None:
        return
    outcome = run_keeper(run.id, settings, node=app.node_name or task.request.hostname,
                         slots=getattr(app, "slots", None))
    log.info("run %s: %s%s", run.id, outcome.verdict.value,
             f": {outcome.message}" if outcome.message else "")
    if outcome.verdict is Verdict.CANNOT_START:
        _cannot_start_here(task, run, outcome.message)
    try:  # its slot and GPUs are free: the next runs start before this one is finalized
        schedule(settings)
    except Exception:  # a failed pass is redone within a second by every worker
        log.exception("placement pass after run %s failed", run.id)
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


def _cannot_start_here(task: Task, run: Run, why: str) -> None:
    """This worker cannot start runs: it drains, so nothing more is placed here; the run
    stays queued and the next pass places it elsewhere."""
    settings = task.app.settings
    log.error("run %s left queued: %s; this worker takes no more runs and drains",
              run.id, why)
    node = task.app.node_name or task.request.hostname
    try:
        request_drain(settings.require_runs_dir(), socket.gethostname(), node)
    except OSError as e:
        log.error("cannot ask %s to drain: %s", node, e)


def _resolve(settings: Settings, run_id: object, phase: str) -> Run | None:
    """The run, or None (logged once, the message acked): no such run here, or deleted."""
    try:
        return resolve_run_id(settings.require_runs_dir(), run_id)
    except RunLookupError as e:
        log.error("rejected %s message: %s", phase, e)
        return None
