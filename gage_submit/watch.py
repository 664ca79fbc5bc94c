"""Watching runs through the shared runs dir: following output, waiting for runs to end.

Both only read files (status from the meta dir, output from
`output/40_run`), so they work from any host that sees the runs dir, with
no broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gage_queue.attempts import may_retry, next_attempt
from gage_queue.consumers import queue_has_consumer
from gage_queue.queue_meta import read_submitted
from gage_queue.settings import DEFAULT_QUEUE
from gage_queue.snapshots import read_queue_state, run_state
from gage_queue.states import UNFINISHED, WAIT_DONE, RunState
from gage_queue.text import shown
from gage_runs.types import Run

from .info import run_output_path
from .progress import run_ref

POLL_SECONDS = 0.25

class NoWorkerNotice:
    """Says once per queue that runs wait on it and no worker consumes it.

    A run must have been seen queued for `after` seconds first (default:
    GAGE_NO_WORKER_NOTICE, `Settings.no_worker_notice`, so a bad value is
    refused when the notice is made, before any waiting); whether a worker
    consumes its queue is read from the runs dir (`gage_queue.consumers`).
    The queue's name is escaped: it is read from the run's files.
    """

    def __init__(self, say: Callable[[str], None], after: float | None = None):
        if after is None:
            from gage_queue.settings import Settings

            after = Settings.from_env().no_worker_notice
        self.say = say
        self.after = after
        self._queued_since: dict[str, float] = {}
        self._told: set[str] = set()

    def check(self, run: Run, state: RunState) -> None:
        if state is not RunState.QUEUED:
            self._queued_since.pop(run.id, None)
            return
        waited = time.monotonic() - self._queued_since.setdefault(run.id, time.monotonic())
        queue = run_queue(run)
        if waited < self.after or queue in self._told:
            return
        if not queue_has_consumer(run.runs_dir, queue):
            self._told.add(queue)
            name = shown(queue, 100)
            self.say(
                f"run {run_ref(run)} has waited {waited:.0f} s on queue '{name}',"
                f" which no worker consumes (start one: gage-worker -Q {name}); still waiting"
            )


def run_queue(run: Run) -> str:
    """The queue the run was submitted to."""
    return str((read_submitted(run) or {}).get("queue") or DEFAULT_QUEUE)


def follow_output(
    run: Run, write: Callable[[bytes], None], *, poll: float = POLL_SECONDS,
    notice: NoWorkerNotice | None = None,
) -> RunState:
    """Copy the run's output to `write` as it grows, until the run ends; its last state.

    The state is read before each copy, so the copy after the run is seen
    ended has all of its output.
    """
    path = run_output_path(run)
    offset = 0
    while True:
        state = run_state(run)
        if notice:
            notice.check(run, state)
        offset = copy_output(path, offset, write)
        if state not in UNFINISHED:
            return state
        time.sleep(poll)


def copy_output(path: str, offset: int, write: Callable[[bytes], None]) -> int:
    """Copy what `path` holds past `offset`; the new offset (a missing file is empty)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(65536):
                write(chunk)
                offset += len(chunk)
    except FileNotFoundError:
        pass
    return offset


def wait_for_runs(
    runs: list[Run],
    *,
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
    on_status: Callable[[dict[str, RunState]], None] = lambda states: None,
    on_finished: Callable[[Run, RunState], None] = lambda run, state: None,
    notice: NoWorkerNotice | None = None,
) -> dict[str, RunState]:
    """Poll until every run is done (`WAIT_DONE`, or `timeout` seconds pass); states by run id.

    `on_finished` is called once per run as it is done, `on_status` after
    every poll with all states, by the ids asked for. A lost run counts as
    done: nothing of it is alive, and reconcile records it terminated;
    unless it has retries left: then it is followed to its last attempt
    (`attempts.next_attempt`), and `on_finished` gets that attempt.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    states: dict[str, RunState] = {}
    waiting = [(run, run) for run in runs]  # (as asked, its last attempt)
    while True:
        still_waiting = []
        for asked, run in waiting:
            current = read_queue_state(run)
            state = states[asked.id] = current.state
            if notice:
                notice.check(run, state)
            retry = next_attempt(run) if state in WAIT_DONE and may_retry(
                state, current.record, run) else None
            if retry is not None:
                still_waiting.append((asked, retry))
            elif state is RunState.LOST and may_retry(state, current.record, run):
                still_waiting.append((asked, run))  # finalize makes its next attempt
            elif state in WAIT_DONE:
                on_finished(run, state)
            else:
                still_waiting.append((asked, run))
        waiting = still_waiting
        on_status(states)
        if not waiting or (deadline is not None and time.monotonic() >= deadline):
            return states
        time.sleep(poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic())))
