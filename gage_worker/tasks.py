"""The Celery tasks `gage.exec` and `gage.finalize`.

Each carries one argument, a run id, which the worker resolves under its
own runs dir. A message whose argument is not a run id of that runs dir
is rejected (not requeued) and logged; nothing runs.
"""

from __future__ import annotations

import logging

from billiard.process import current_process
from celery import Task
from celery.exceptions import Reject

from gage_runs.errors import RunLookupError
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run

from .celery_app import EXEC_TASK, FINALIZE_TASK, GageApp
from .enqueue import send_finalize
from .errors import BrokerUnavailable
from .runner import exec_phase, finalize_phase
from .settings import Settings

log = logging.getLogger(__name__)


def register_tasks(app: GageApp) -> None:
    """Register both tasks on `app`."""
    app.task(name=EXEC_TASK, bind=True)(exec_task)
    app.task(name=FINALIZE_TASK, bind=True)(finalize_task)


def exec_task(task: Task, run_id: str) -> None:
    """Execute a run, then send its finalize task."""
    settings: Settings = task.app.settings
    run = _resolve(settings, run_id, "exec")
    if not exec_phase(run, settings, gpu=gpu_slot(settings.gpus)):
        return
    try:
        send_finalize(run.id, settings)
    except BrokerUnavailable as e:
        log.error("run %s: %s; reconcile will finalize it", run.id, e)


def finalize_task(task: Task, run_id: str) -> None:
    """Finalize an executed (or lost, or cancelled) run."""
    settings: Settings = task.app.settings
    finalize_phase(_resolve(settings, run_id, "finalize"), settings)


def gpu_slot(gpus: tuple[str, ...]) -> str | None:
    """The GPU of this pool process: one per process index, or None."""
    if not gpus:
        return None
    index = getattr(current_process(), "index", 0) or 0
    return gpus[index % len(gpus)]


def _resolve(settings: Settings, run_id: object, phase: str) -> Run:
    try:
        return resolve_run_id(settings.require_runs_dir(), run_id)
    except RunLookupError as e:
        log.error("rejected %s message: %s", phase, e)
        raise Reject(str(e), requeue=False) from None
