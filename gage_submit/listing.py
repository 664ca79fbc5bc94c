"""`list`'s rows: read only the runs it shows, or those its filters must look at.

The runs are ordered without opening their files (`gage_runs.runs_dir.scan_runs`:
one stat per run). Without filters only the shown runs are read (a
bounded number of files each). A status filter of statuses only queue
runs have (queued, lost, finalizing, finalize-failed), plus `running`,
looks at the runs of the active index (`gage_queue.active`) and, for
`running`, at runs with Gage's `proc/lock` (a stat each); other filters
read every run. Where a listing reads many runs, the rows of ended runs
come from the user's row cache (`row_cache`): a stat each instead of a
read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gage_queue.active import active_ids
from gage_runs.runs_dir import RunEntry, scan_runs

from .info import RunInfo, run_info
from .row_cache import WORTH_IT, RowCache

INDEXED = frozenset({"queued", "lost", "finalizing", "finalize-failed"})
"""Statuses only runs of the queue have: every such run is in the active index."""


@dataclass(frozen=True)
class ListFilter:
    statuses: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    label: str | None = None
    schedule: str | None = None

    def __bool__(self) -> bool:
        return bool(self.statuses or self.ops or self.label is not None or self.schedule)

    def keeps(self, info: RunInfo, op_names: set[str]) -> bool:
        return (
            (not self.statuses or info.status in self.statuses)
            and (not self.ops or bool(op_names & set(self.ops)))
            and (self.label is None or self.label in (info.label or ""))
            and (self.schedule is None or info.schedule == self.schedule)
        )


def list_rows(runs_dir: str, where: ListFilter, *, limit: int | None, namespace: str | None,
              detail: bool) -> tuple[list[tuple[int, RunInfo]], int]:
    """The rows to show (index in the newest-first listing, info) and how many match."""
    entries = scan_runs(runs_dir)
    brief = not detail and where.schedule is None  # the table: read what it shows
    candidates = _candidates(runs_dir, entries, where.statuses) if where else None
    if where:  # every candidate is read to know what matches
        reads = len(entries) if candidates is None else len(candidates)
    else:
        reads = len(entries) if limit is None else min(limit, len(entries))
    rows = _Rows(namespace, detail, brief,
                 RowCache.load(runs_dir) if brief and reads >= WORTH_IT else None)
    try:
        if not where:
            return _first(entries, limit, rows)
        matched = []
        for index, entry in enumerate(entries, 1):
            if candidates is not None and entry.id not in candidates:
                continue
            found = rows.info(entry, where.ops)
            if found is not None and where.keeps(*found):
                matched.append((index, found[0]))
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

    def info(self, entry: RunEntry, ops: tuple[str, ...] = ()
             ) -> tuple[RunInfo, set[str]] | None:
        """The entry's info and op names; None if it is not a readable run or not of `ops`."""
        if self.cache is not None and (kept := self.cache.get(entry, self.namespace)):
            info, opref = kept
            op_names = {opref.op_name, opref.get_full_name(), info.op}
            return (info, op_names) if not ops or op_names & set(ops) else None
        run = entry.load()
        if run is None:
            return None
        op_names = {run.opref.op_name, run.opref.get_full_name()}
        if ops and not op_names & set(ops):
            return None
        info = run_info(run, namespace=self.namespace, detail=self.detail, brief=self.brief)
        if self.cache is not None:
            self.cache.keep(entry, run.opref, info)
        return info, op_names | {info.op}

    def done(self, entries: list[RunEntry]) -> None:
        if self.cache is not None:
            self.cache.save(entries)


def _candidates(runs_dir: str, entries: list[RunEntry],
                statuses: tuple[str, ...]) -> set[str] | None:
    """The ids of the only runs that can have one of `statuses`; None: any run can."""
    if not statuses or not set(statuses) <= INDEXED | {"running"}:
        return None
    ids = set(active_ids(runs_dir))
    if "running" in statuses:  # Gage's own runs too (`gage run`): they hold proc/lock
        ids.update(e.id for e in entries if os.path.exists(os.path.join(e.meta_dir, "proc", "lock")))
    return ids
