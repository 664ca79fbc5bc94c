"""`list`'s rows: read only the runs it shows, or those its filters must look at.

The runs are ordered without opening their files (`gage_runs.runs_dir.scan_runs`:
one stat per run). Without filters only the shown runs are read (a
bounded number of files each). A status filter of statuses only queue
runs have (queued, lost, finalizing, finalize-failed), plus `running`,
looks at the runs of the active index (`gage_worker.active`) and, for
`running`, at runs with Gage's `proc/lock` (a stat each); other filters
read every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gage_runs.runs_dir import RunEntry, scan_runs
from gage_worker.active import active_ids

from .info import RunInfo, run_info

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
    if not where:
        return _first(entries, limit, namespace, detail, brief)
    candidates = _candidates(runs_dir, entries, where.statuses)
    rows = []
    for index, entry in enumerate(entries, 1):
        if candidates is not None and entry.id not in candidates:
            continue
        run = entry.load()
        if run is None:
            continue
        op_names = {run.opref.op_name, run.opref.get_full_name()}
        if where.ops and not op_names & set(where.ops):
            continue
        info = run_info(run, namespace=namespace, detail=detail, brief=brief)
        if where.keeps(info, op_names | {info.op}):
            rows.append((index, info))
    return (rows if limit is None else rows[:limit]), len(rows)


def _first(entries: list[RunEntry], limit: int | None, namespace: str | None,
           detail: bool, brief: bool) -> tuple[list[tuple[int, RunInfo]], int]:
    rows = []
    unreadable = 0
    for index, entry in enumerate(entries, 1):
        if limit is not None and len(rows) >= limit:
            break
        run = entry.load()
        if run is None:
            unreadable += 1
            continue
        rows.append((index, run_info(run, namespace=namespace, detail=detail, brief=brief)))
    return rows, len(entries) - unreadable


def _candidates(runs_dir: str, entries: list[RunEntry],
                statuses: tuple[str, ...]) -> set[str] | None:
    """The ids of the only runs that can have one of `statuses`; None: any run can."""
    if not statuses or not set(statuses) <= INDEXED | {"running"}:
        return None
    ids = set(active_ids(runs_dir))
    if "running" in statuses:  # Gage's own runs too (`gage run`): they hold proc/lock
        ids.update(e.id for e in entries if os.path.exists(os.path.join(e.meta_dir, "proc", "lock")))
    return ids
