"""`list`'s rows: read only the runs it shows, or those its filters must look at.

The runs are ordered without opening their files (`gage_runs.runs_dir.scan_runs`:
one stat per run). Without filters only the shown runs are read (a
bounded number of files each). A status filter of states in which every
run of the queue is in the active index (`gage_queue.states.INDEXED`:
queued, running, lost, finalizing, finalize-failed) looks at the runs of
that index (`gage_queue.active`) and, for `running`, at runs with Gage's
`proc/lock` (a stat each); other filters read every run. Where a
listing reads many runs, the rows of ended runs come from the user's row
cache (`row_cache`): a stat each instead of a read.
"""

from __future__ import annotations

import os

from gage_queue.active import active_ids
from gage_queue.states import INDEXED, RunState
from gage_runs.runs_dir import RunEntry, scan_runs

from .filters import RunFilter
from .info import RunInfo, run_info
from .row_cache import WORTH_IT, RowCache


def list_rows(runs_dir: str, where: RunFilter, *, limit: int | None, namespace: str | None,
              detail: bool, list_cache: bool | None = None
              ) -> tuple[list[tuple[int, RunInfo]], int]:
    """The rows to show (index in the newest-first listing, info) and how many match.

    `list_cache` is `Settings.list_cache`; by default the settings are
    loaded from the environment first, so a bad one is refused (exit 2)
    whether or not this listing would use the cache.
    """
    if list_cache is None:
        from gage_queue.settings import Settings

        list_cache = Settings.from_env().list_cache
    entries = scan_runs(runs_dir)
    brief = not detail and where.schedule is None  # the table: read what it shows
    candidates = _candidates(runs_dir, entries, where.statuses) if where else None
    if where:  # every candidate is read to know what matches
        reads = len(entries) if candidates is None else len(candidates)
    else:
        reads = len(entries) if limit is None else min(limit, len(entries))
    rows = _Rows(namespace, detail, brief,
                 RowCache.load(runs_dir, list_cache) if brief and reads >= WORTH_IT else None)
    try:
        if not where:
            return _first(entries, limit, rows)
        matched = []
        for index, entry in enumerate(entries, 1):
            if candidates is not None and entry.id not in candidates:
                continue
            found = rows.info(entry, where)
            if found is None:
                continue
            info, op_names = found
            if where.matches(op_names, info.label, info.status, info.schedule):
                matched.append((index, info))
        return (matched if limit is None else matched[:limit]), len(matched)
    finally:
        rows.done(entries)


def _first(entries: list[RunEntry], limit: int | None,
           rows: _Rows) -> tuple[list[tuple[int, RunInfo]], int]:
    shown = []
    unreadable = 0
    for index, entry in enumerate(entries, 1):
        if limit is not None and len(shown) >= limit:
            break
        found = rows.info(entry)
        if found is None:
            unreadable += 1
            continue
        shown.append((index, found[0]))
    return shown, len(entries) - unreadable


class _Rows:
    """Each entry's info: from the row cache when it has it, else read (and kept if it ended)."""

    def __init__(self, namespace: str | None, detail: bool, brief: bool,
                 cache: RowCache | None):
        self.namespace, self.detail, self.brief, self.cache = namespace, detail, brief, cache

    def info(self, entry: RunEntry, where: RunFilter | None = None
             ) -> tuple[RunInfo, set[str]] | None:
        """The entry's info and op names; None if it is not a readable run or not of
        `where`'s ops (known before reading the rest)."""
        if self.cache is not None and (kept := self.cache.get(entry, self.namespace)):
            info, opref = kept
            op_names = {opref.op_name, opref.get_full_name(), info.op}
            return (info, op_names) if where is None or where.keeps_ops(op_names) else None
        run = entry.load()
        if run is None:
            return None
        op_names = {run.opref.op_name, run.opref.get_full_name()}
        if where is not None and not where.keeps_ops(op_names):
            return None
        info = run_info(run, namespace=self.namespace, detail=self.detail, brief=self.brief)
        if self.cache is not None:
            self.cache.keep(entry, run.opref, info)
        return info, op_names | {info.op}

    def done(self, entries: list[RunEntry]) -> None:
        if self.cache is not None:
            self.cache.save(entries)


def _candidates(runs_dir: str, entries: list[RunEntry],
                statuses: tuple[RunState, ...]) -> set[str] | None:
    """The ids of the only runs that can have one of `statuses`; None: any run can.

    A run of the queue in an INDEXED state is in the active index; a run of
    Gage's own can be running too, and then holds `proc/lock`.
    """
    if not statuses or not set(statuses) <= INDEXED:
        return None
    ids = set(active_ids(runs_dir))
    if RunState.RUNNING in statuses:  # Gage's own runs too (`gage run`)
        ids.update(e.id for e in entries if os.path.exists(os.path.join(e.meta_dir, "proc", "lock")))
    return ids
