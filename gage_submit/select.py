"""Naming runs on the command line, as Gage does.

A spec is, in this order: a 1-based index into the newest-first listing
(`1` is the latest run, the `#` column of `list`), a slice `a:b` of it, or
a run id, id prefix, name or name prefix. An exact id or name wins over
prefixes; a prefix that matches several runs is an error listing them.
"""

from __future__ import annotations

import re

from gage_runs.errors import RunLookupError
from gage_runs.runs_dir import list_runs
from gage_runs.types import Run

_SLICE = re.compile(r"(-?\d+)?:(-?\d+)?\Z")
_MAX_LISTED = 10


def select_run(runs_dir: str, spec: str) -> Run:
    """The one run `spec` names."""
    runs = list_runs(runs_dir)
    selected = _select(runs, spec, runs_dir)
    if len(selected) > 1:
        raise RunLookupError(f"{spec!r} names {len(selected)} runs; name one run")
    return selected[0]


def select_runs(runs_dir: str, specs: list[str]) -> list[Run]:
    """The runs the specs name, in the order named, each once."""
    runs = list_runs(runs_dir)
    selected: dict[str, Run] = {}
    for spec in specs:
        for run in _select(runs, spec, runs_dir):
            selected.setdefault(run.id, run)
    return list(selected.values())


def _select(runs: list[Run], spec: str, runs_dir: str) -> list[Run]:
    if not spec:
        raise RunLookupError("a run id, name or index is required")
    if spec.isdigit() and 1 <= int(spec) <= len(runs):
        return [runs[int(spec) - 1]]
    m = _SLICE.match(spec)
    if m:
        selected = runs[_slice_start(m.group(1)) : _slice_end(m.group(2))]
        if not selected:
            raise RunLookupError(f"no runs in {spec!r} ({len(runs)} runs in {runs_dir})")
        return selected
    return [_one_by_id_or_name(runs, spec, runs_dir)]


def _slice_start(text: str | None) -> int | None:
    if not text:
        return None
    i = int(text)
    return i - 1 if i > 0 else i


def _slice_end(text: str | None) -> int | None:
    return int(text) if text else None


def _one_by_id_or_name(runs: list[Run], spec: str, runs_dir: str) -> Run:
    matches = [run for run in runs if spec in (run.id, run.name)] or [
        run for run in runs if run.id.startswith(spec) or run.name.startswith(spec)
    ]
    if not matches:
        raise RunLookupError(f"no run matches {spec!r} in {runs_dir}")
    if len(matches) > 1:
        listed = ", ".join(f"{run.name} ({run.id[:8]})" for run in matches[:_MAX_LISTED])
        more = f" and {len(matches) - _MAX_LISTED} more" if len(matches) > _MAX_LISTED else ""
        raise RunLookupError(
            f"{spec!r} matches {len(matches)} runs: {listed}{more}; use a longer prefix"
        )
    return matches[0]
