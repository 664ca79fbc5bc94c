"""The index of active runs: an entry per run the queue still owes something.

`<runs>/.gage-queue/active/<run-id>` is an empty file for every run that
is queued, running, lost, finalizing or finalize-failed, so reconcile,
`gage-submit list --status queued` and the beat read as many files as
there are active runs, not as there are runs.

- The submitter adds the entry first, before `queue/submitted` and before
  the run is sent (`enqueue.record_submission`): no step of a submit can
  leave an owed run without one.
- Finalize removes it after it has committed an ended state (completed,
  error, terminated); a finalize-failed run keeps it: it still needs a
  person.
- Reconcile drops the entries of runs that ended, were deleted, or that
  `gage run --start` took, and the full scan (`reconcile.repair_index`)
  adds the entries of active runs that have none (a crash, an older
  version, a run restored from `.deleted`). An entry is only ever a hint
  to look at a run: the run's own files decide its state.
"""

from __future__ import annotations

import contextlib
import os

from gage_queue.layout import active_dir
from gage_runs.fsmode import touch_shared
from gage_runs.names import is_run_id
from gage_runs.types import Run


def index_dir(runs_dir: str) -> str:
    return active_dir(runs_dir)


def entry_path(runs_dir: str, run_id: str) -> str:
    return os.path.join(index_dir(runs_dir), run_id)


def add(run: Run) -> None:
    """Make the run's entry (an empty, shared-writable file); idempotent."""
    touch_shared(entry_path(run.runs_dir, run.id))


def remove(runs_dir: str, run_id: str) -> None:
    """Drop a run's entry, if it has one."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(entry_path(runs_dir, run_id))


def entry_age(runs_dir: str, run_id: str, now: float) -> float:
    """Seconds since the entry was made (0 if it is gone)."""
    try:
        return now - os.stat(entry_path(runs_dir, run_id)).st_mtime
    except FileNotFoundError:
        return 0.0


def active_ids(runs_dir: str) -> list[str]:
    """The ids in the index (one listing, no file opened), sorted."""
    try:
        names = os.listdir(index_dir(runs_dir))
    except FileNotFoundError:
        return []
    return sorted(name for name in names if is_run_id(name))


def newest_first(runs_dir: str) -> list[str]:
    """The ids in the index, the latest submitted first (one stat per entry)."""
    def made(run_id: str) -> int:
        try:
            return os.stat(entry_path(runs_dir, run_id)).st_mtime_ns
        except FileNotFoundError:
            return 0

    return sorted(active_ids(runs_dir), key=made, reverse=True)
