"""Runs that wait for runs (`--after`): released, or ended, by the placement pass.

A run submitted with `--after RUN...` is committed `waiting` and its
waiting entry names the runs it waits for. Each placement pass looks at
those runs' states (one record read each, cached for the pass):

- all ended completed (or, with `--after-any`, all ended at all; a
  runs-summary dependency's runs may end any way): the run
  is released, under its lock (event `release`), and is placed like any
  queued run from then on, in its submit order;
- one ended otherwise (error, terminated, cancelled, finalize-failed, or
  deleted): the run ends `terminated` without running (event
  `dependency-failed`, exit -15, reason `dependency`, "dependency NAME
  ended error") and is finalized at once, so the runs waiting on *it*
  end at the next pass, transitively; a cancelled run's dependents end so;
- otherwise it keeps waiting.

A run that ended and was tried again (lost with retries left, or
preempted) counts as its last attempt, as `gage-submit wait` follows it:
the runs after it wait for that attempt.

The state lives in the runs dir only, so dependencies hold across hosts
and survive any worker, host or broker loss: whichever worker makes the
next pass decides.
"""

from __future__ import annotations

import logging

from gage_queue.attempts import next_attempt
from gage_queue.locks import RunLock
from gage_queue.settings import Settings
from gage_queue.snapshots import queue_state
from gage_queue.states import (
    FINISHED,
    STOPPED_EXIT,
    EndReason,
    Event,
    RunState,
    dependency_words,
)
from gage_queue.waiting import Waiting, add_waiting, lock_waiting
from gage_runs.errors import RunLookupError
from gage_runs.meta import make_run_timestamp
from gage_runs.names import run_name_for_id
from gage_runs.runs_dir import resolve_run_id
from gage_worker.finalize import finalize_phase

log = logging.getLogger(__name__)

DELETED = None  # a dependency whose run is gone
MAX_ATTEMPTS = 1000  # a chain followed no further (retries are at most 100; preemptions)


def settle(settings: Settings, entries: list[Waiting]) -> list[Waiting]:
    """The entries that wait for no run now: release or end those whose dependencies ended."""
    runs_dir = settings.require_runs_dir()
    states: dict[str, RunState | None] = {}
    ready = []
    for entry in entries:
        if not entry.after:
            ready.append(entry)
            continue
        ended = {dep: _state(runs_dir, dep, states) for dep in entry.after}
        failed = [(dep, s) for dep, s in ended.items() if dep not in entry.any_end
                  and (s is DELETED or (s in FINISHED and s is not RunState.COMPLETED))]
        if failed and not entry.after_any:
            dep, state = failed[0]
            _end(settings, entry, dep, state)
        elif all(s is DELETED or s in FINISHED for s in ended.values()) \
                and _release(runs_dir, entry):
            ready.append(entry.released())
    return ready


def _state(runs_dir: str, run_id: str, states: dict[str, RunState | None]) -> RunState | None:
    if run_id not in states:
        states[run_id] = _last_attempt_state(runs_dir, run_id)
    return states[run_id]


def _last_attempt_state(runs_dir: str, run_id: str) -> RunState | None:
    """The state of the run's last attempt: a run that ended and was tried again (lost with
    retries left, preempted) counts as the attempt that retries it, as `wait` follows it."""
    try:
        run = resolve_run_id(runs_dir, run_id)
    except RunLookupError:
        return DELETED
    for _ in range(MAX_ATTEMPTS):
        state = queue_state(run).state
        if state not in FINISHED or state is RunState.COMPLETED:
            return state
        retry = next_attempt(run)
        if retry is None:
            return state
        run = retry
    return state


def _release(runs_dir: str, entry: Waiting) -> bool:
    """Queue a waiting run whose dependencies ended as it asked; False if not now."""
    lock = lock_waiting(runs_dir, entry.run_id)
    if not isinstance(lock, RunLock):
        return False
    with lock:
        record = lock.record()
        if record.state is not RunState.WAITING:
            return record.state is RunState.QUEUED
        lock.advance(record, Event.RELEASE, RunState.QUEUED, detail=None)
        add_waiting(runs_dir, entry.released())
    log.info("run %s: the runs it waited for ended; queued", entry.run_id)
    return True


def _end(settings: Settings, entry: Waiting, dep: str, state: RunState | None) -> None:
    """End a waiting run without running it: a run it depends on did not complete."""
    runs_dir = settings.require_runs_dir()
    lock = lock_waiting(runs_dir, entry.run_id)
    if not isinstance(lock, RunLock):
        return
    words = (f"dependency {run_name_for_id(dep)} was deleted" if state is DELETED
             else dependency_words(run_name_for_id(dep), state))
    with lock:
        record = lock.record()
        if record.state is not RunState.WAITING:
            return
        lock.advance(record, Event.DEPENDENCY_FAILED, RunState.FINALIZING,
                     exit_code=STOPPED_EXIT, reason=EndReason.DEPENDENCY, detail=words,
                     ended=make_run_timestamp())
    log.info("run %s: %s; terminated without running", entry.run_id, words)
    finalize_phase(lock.run, settings)

