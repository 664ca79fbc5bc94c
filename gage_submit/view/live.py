"""What changed since the last look: the server polls these for its event streams.

The page gets server-sent events; the server finds the changes by reading
the runs dir, since that is the only place they are written (by keepers
and finalize on any host, through NFS or GlusterFS): no file system
notification crosses hosts. Each poll reads as much as the page shows:

- `RowsWatch`: the shown rows of the runs table. A run that has not ended
  is read again (`run_info`, a few small reads); an ended run only if its
  meta dir or `<id>.user/` changed (two stats: a label, a restaged
  run). A change of the runs dir's own mtime (a run added or deleted) is
  reported once, so the page can fetch its rows again.
- `RunWatch`: one run's status and fields, and its output as it grows.
- `PoolWatch`: the pool (`data.pool_snapshot`, O(active)).
"""

from __future__ import annotations

import json
import os
from typing import Any

from gage_queue.states import ENDED
from gage_runs.errors import RunLookupError
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run

from ..info import run_info
from .data import OutputReader, pool_snapshot, row, run_detail

MAX_WATCHED_ROWS = 500


def _stamp(run: Run) -> tuple[int, int] | None:
    """What changes when an ended run changes: the mtimes of its meta and user dirs."""
    try:
        meta = os.stat(run.meta_dir).st_mtime_ns
    except OSError:
        return None
    try:
        user = os.stat(run.run_dir + ".user").st_mtime_ns
    except OSError:
        user = 0
    return meta, user


def _dir_mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


class RowsWatch:
    """The rows a page shows, and whether the runs dir got or lost a run."""

    def __init__(self, runs_dir: str, ids: list[str], namespace: str | None):
        self.runs_dir = runs_dir
        self.namespace = namespace
        self.runs: list[Run] = []
        for run_id in dict.fromkeys(ids[:MAX_WATCHED_ROWS]):
            try:
                self.runs.append(resolve_run_id(runs_dir, run_id))
            except RunLookupError:
                continue
        self._rows: dict[str, dict[str, Any]] = {}
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._mtime = _dir_mtime(runs_dir)

    def poll(self) -> tuple[list[dict[str, Any]], bool]:
        """Rows that changed since the last poll (all of them the first time), and
        whether the runs dir's entries changed."""
        changed = []
        for run in self.runs:
            last = self._rows.get(run.id)
            stamp = _stamp(run)
            if stamp is None:
                if last is None or not last.get("gone"):
                    self._rows[run.id] = {"id": run.id, "gone": True}
                    changed.append(self._rows[run.id])
                continue
            if last is not None and last.get("status") in _ENDED and self._stamps.get(
                    run.id) == stamp:
                continue
            new = row(0, run_info(run, namespace=self.namespace, brief=True))
            del new["index"]
            self._stamps[run.id] = stamp
            if new != last:
                self._rows[run.id] = new
                changed.append(new)
        mtime = _dir_mtime(self.runs_dir)
        listing = mtime != self._mtime
        self._mtime = mtime
        return changed, listing


_ENDED = {state.value for state in ENDED}


class RunWatch:
    """One run: its detail when it changes, and its output as it grows."""

    def __init__(self, run: Run, namespace: str | None):
        self.run = run
        self.namespace = namespace
        self.output = OutputReader(run)
        self._detail: dict[str, Any] | None = None
        self._stamp: tuple[int, int] | None = None

    def detail(self) -> dict[str, Any] | None:
        """The run's detail if it changed since the last call, else None."""
        stamp = _stamp(self.run)
        if self._detail is not None and self._detail["ended"] and stamp == self._stamp:
            return None
        detail = run_detail(self.run, self.namespace)
        self._stamp = stamp
        if detail == self._detail:
            return None
        self._detail = detail
        return detail


class PoolWatch:
    """The pool, when it changed."""

    def __init__(self, runs_dir: str):
        self.runs_dir = runs_dir
        self._last: str | None = None

    def poll(self) -> dict[str, Any] | None:
        pool = pool_snapshot(self.runs_dir)
        encoded = json.dumps(pool, sort_keys=True)
        if encoded == self._last:
            return None
        self._last = encoded
        return pool
