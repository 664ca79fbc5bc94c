"""Watching runs through the shared runs dir: following output, waiting for runs to end.

Both only read files (status from the meta dir, output from
`output/40_run`), so they work from any host that sees the runs dir, with
no broker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from gage_queue.consumers import queue_has_consumer
from gage_queue.queue_meta import read_submitted
from gage_queue.snapshots import queue_status
from gage_runs.types import Run

from .info import FINISHED, run_output_path

POLL_SECONDS = 0.25
# While a run is in one of these, its output may still grow.
ACTIVE = ("pending", "queued", "running", "finalizing")


NOTICE_AFTER_SECONDS = 5.0  # GAGE_NO_WORKER_NOTICE overrides it


class NoWorkerNotice:
    """Says once per queue that runs wait on it and no worker consumes it.

    A run must have been seen queued for `after` seconds first; whether a
    worker consumes its queue is read from the runs dir (`presence`).
    """

    def __init__(self, say: Callable[[str], None], after: float | None = None):
        if after is None:
            after = float(os.environ.get("GAGE_NO_WORKER_NOTICE") or NOTICE_AFTER_SECONDS)
        self.say = say
        self.after = after
        self._queued_since: dict[str, float] = {}
        self._told: set[str] = set()

    def check(self, run: Run, status: str) -> None:
        if status != "queued":
            self._queued_since.pop(run.id, None)
            return
        waited = time.monotonic() - self._queued_since.setdefault(run.id, time.monotonic())
        queue = str((read_submitted(run) or {}).get("queue") or "gage")
        if waited < self.after or queue in self._told:
            return
        if not queue_has_consumer(os.path.dirname(run.run_dir), queue):
            self._told.add(queue)
            self.say(
                f"run {run.name} ({run.id[:8]}) has waited {waited:.0f} s on queue {queue!r},"
                f" which no worker consumes (start one: gage-worker -Q {queue}); still waiting"
            )


def follow_output(
    run: Run, write: Callable[[bytes], None], *, poll: float = POLL_SECONDS,
    notice: NoWorkerNotice | None = None,
) -> str:
    """Copy the run's output to `write` as it grows, until the run ends; its last status.

    The status is read before each copy, so the copy after the run is seen
    ended has all of its output.
    """
    path = run_output_path(run)
    offset = 0
    while True:
        status = queue_status(run)
        if notice:
            notice.check(run, status)
        offset = copy_output(path, offset, write)
        if status not in ACTIVE:
            return status
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
    on_status: Callable[[dict[str, str]], None] = lambda statuses: None,
    on_finished: Callable[[Run, str], None] = lambda run, status: None,
    notice: NoWorkerNotice | None = None,
) -> dict[str, str]:
    """Poll until every run has finished (or `timeout` seconds pass); statuses by run id.

    `on_finished` is called once per run as it finishes, `on_status` after
    every poll with all statuses. A lost run counts as finished: its
    worker died and reconcile finalizes it as terminated.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    statuses: dict[str, str] = {}
    waiting = list(runs)
    while True:
        still_waiting = []
        for run in waiting:
            status = statuses[run.id] = queue_status(run)
            if notice:
                notice.check(run, status)
            if status in FINISHED:
                on_finished(run, status)
            else:
                still_waiting.append(run)
        waiting = still_waiting
        on_status(statuses)
        if not waiting or (deadline is not None and time.monotonic() >= deadline):
            return statuses
        time.sleep(poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic())))
