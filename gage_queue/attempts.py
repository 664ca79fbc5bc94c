"""Attempts of a run (`--retries N`): which end calls for another, and where it is.

The next attempt of a run has an id derived from the run's (`retry_id`),
so it is made at most once and anyone can find it from the run alone:
`wait` follows a run to its last attempt this way.
"""

from __future__ import annotations

import uuid
from typing import Any

from gage_queue.queue_meta import read_submitted
from gage_queue.record import RunRecord
from gage_queue.requests import RetryOn, request_from
from gage_queue.states import EndReason, RunState
from gage_runs.errors import RunLookupError
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run

_NAMESPACE = uuid.UUID("6f0c1f3e-5d8a-4c1e-9b7a-2d4e8f9a0b1c")
LOST_REASONS = frozenset({EndReason.WORKER_LOST, EndReason.HOST_LOST})


def retry_id(run_id: str) -> str:
    """The id of the attempt that retries `run_id`."""
    return str(uuid.uuid5(_NAMESPACE, run_id))


def attempt_of(submitted: dict[str, Any]) -> int:
    attempt = submitted.get("attempt")
    return attempt if isinstance(attempt, int) and attempt >= 1 else 1


def _count(submitted: dict[str, Any], name: str) -> int:
    value = submitted.get(name)
    return value if isinstance(value, int) and value >= 0 else 0


def retried(submitted: dict[str, Any]) -> int:
    """Retries used so far (a preempted attempt's next one is not a retry)."""
    return _count(submitted, "retried")


def preempted(submitted: dict[str, Any]) -> int:
    """How many attempts in a row before this one were preempted."""
    return _count(submitted, "preempted")


def retries_left(submitted: dict[str, Any]) -> int:
    return max(0, request_from(submitted).retries - retried(submitted))


def retry_due(record: RunRecord, submitted: dict[str, Any]) -> bool:
    """Whether the run's recorded end calls for another attempt."""
    if record.reason is EndReason.PREEMPTED:
        return True  # not counted against --retries
    if not retries_left(submitted):
        return False
    if record.reason in LOST_REASONS:
        return True
    return request_from(submitted).retry_on is RetryOn.ERROR and record.reason is EndReason.FAILED


def may_retry(state: RunState, record: RunRecord | None, run: Run) -> bool:
    """Whether another attempt of a run in `state` is made or may still be made."""
    submitted = read_submitted(run) or {}
    if state is RunState.LOST:
        return retries_left(submitted) > 0  # finalize makes the attempt when it records it
    return record is not None and retry_due(record, submitted)


def next_attempt(run: Run) -> Run | None:
    """The attempt that retries `run`, if it was made."""
    try:
        return resolve_run_id(run.runs_dir, retry_id(run.id))
    except RunLookupError:
        return None
