"""Retries (`--retries N`): a run that ended lost is submitted again as a new, linked run.

Gage runs are immutable once finalized, so an attempt is a new run staged
from the previous attempt's source code (`gage_runs.restage`), with the
same config, label, queue, time limit, GPUs and priority, and
`queue/submitted` saying which attempt it is and which run it retries.
Its keeper sets `GAGE_RESUME_RUN_DIR` to the previous attempt's run dir,
so a program can resume from its checkpoint.

A run retries when it ended lost (its worker or its host died) and, with
`--retry-on error`, when it exited non-zero; never when it was cancelled,
stopped by its time limit or by a shutdown. A preempted run (`--preemptible`)
always gets its next attempt, not counted against `--retries`. Finalize stages the next
attempt before it commits the old run's end, under the old run's lock,
with an id derived from the old run's (`attempts.retry_id`): a finalize
that crashes and is redone finds the attempt made and makes no second one.
"""

from __future__ import annotations

import contextlib
import logging
import os

from gage_queue.attempts import attempt_of, preempted, retried, retry_due, retry_id
from gage_queue.broker.send import record_submission
from gage_queue.depends import read_depends, write_depends
from gage_queue.layout import SUBMITTED, queue_file
from gage_queue.queue_meta import read_submitted
from gage_queue.record import RunRecord
from gage_queue.requests import request_from, time_limit_of
from gage_queue.settings import DEFAULT_QUEUE
from gage_queue.states import EndReason
from gage_runs.errors import RunLookupError
from gage_runs.restage import RunSource, stage_from_run
from gage_runs.runs_dir import resolve_run_id
from gage_runs.sidecars import run_label
from gage_runs.staging import discard_run
from gage_runs.types import Run

log = logging.getLogger(__name__)


def retry_if_due(run: Run, record: RunRecord) -> Run | None:
    """Stage and submit the next attempt of an ended run if its end calls for one."""
    submitted = read_submitted(run) or {}
    if not retry_due(record, submitted):
        return None
    new_id = retry_id(run.id)
    try:
        existing = resolve_run_id(run.runs_dir, new_id)
    except RunLookupError:
        existing = None
    if existing is not None:
        if os.path.exists(queue_file(existing, SUBMITTED)):
            return existing  # made by an earlier finalize attempt
        discard_run(existing)  # half made: made again
    attempt = attempt_of(submitted) + 1
    was_preempted = record.reason is EndReason.PREEMPTED
    source = RunSource.of(run)
    new = stage_from_run(source, source.config, run.runs_dir, label=run_label(run),
                         run_id=new_id)
    with contextlib.suppress(ValueError):  # unreadable: the attempt gets no run's files
        write_depends(new, read_depends(run))
    request = request_from(submitted)
    record_submission(
        new, queue=str(submitted.get("queue") or DEFAULT_QUEUE),
        time_limit=time_limit_of(submitted),
        schedule=submitted.get("schedule") if isinstance(submitted.get("schedule"), str) else None,
        request=request.without_waits(),  # those ended
        attempt=attempt, retry_of=run.id,
        retried=retried(submitted) + (0 if was_preempted else 1),
        preempted=preempted(submitted) + 1 if was_preempted else 0,
    )
    log.info("run %s: %s; attempt %d of %d is run %s", run.id, record.detail, attempt,
             request.retries + 1, new.id)
    return new

