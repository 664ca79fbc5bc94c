"""A runs dir: checking it, listing its runs, and finding one run."""

from __future__ import annotations

import os
import re

from .errors import RunFormatError, RunLookupError, RunsDirError
from .meta import meta_timestamp, run_for_meta_dir
from .names import is_run_id
from .types import Run


def check_runs_dir(runs_dir: str, *, writable: bool = True) -> str:
    """The absolute runs dir; RunsDirError if it is missing or unusable."""
    path = os.path.abspath(os.path.expanduser(runs_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunsDirError(f"runs dir {path} is not a directory")
    if not os.path.isdir(path):
        raise RunsDirError(f"runs dir {path} does not exist")
    mode = os.R_OK | os.X_OK | (os.W_OK if writable else 0)
    if not os.access(path, mode):
        needed = "writable" if writable else "readable"
        raise RunsDirError(f"runs dir {path} is not {needed}")
    return path


def list_runs(runs_dir: str, *, deleted: bool = False) -> list[Run]:
    """Runs in a runs dir, newest first (started, else staged, else initialized).

    An entry is a run if its name ends with `.meta` and it has a valid
    opref and a hex id; anything else is skipped, as Gage does.
    """
    suffix = ".meta.deleted" if deleted else ".meta"
    try:
        names = os.listdir(runs_dir)
    except FileNotFoundError:
        return []
    runs = []
    for name in names:
        if not name.endswith(suffix):
            continue
        try:
            runs.append(run_for_meta_dir(os.path.join(runs_dir, name)))
        except RunFormatError:
            continue
    runs.sort(key=run_timestamp, reverse=True)
    return runs


def run_timestamp(run: Run) -> int:
    """The sort key Gage uses: started, else staged, else initialized."""
    for name in ("started", "staged", "initialized"):
        ts = meta_timestamp(run, name)
        if ts is not None:
            return ts
    return 0


def find_run(runs_dir: str, spec: str) -> Run:
    """The one run `spec` names (see `select_runs`)."""
    runs = list_runs(runs_dir)
    selected = _select(runs, spec, runs_dir)
    if len(selected) > 1:
        raise RunLookupError(f"{spec!r} names {len(selected)} runs; name one run")
    return selected[0]


def select_runs(runs_dir: str, specs: list[str]) -> list[Run]:
    """The runs the specs name, in the order named, each once.

    A spec is, as in Gage: a 1-based index into the newest-first listing
    (`1` is the latest run), a slice `a:b` of it, or a run id, id prefix,
    name or name prefix. An exact id or name wins over prefixes; a prefix
    that matches several runs is an error listing them.
    """
    runs = list_runs(runs_dir)
    selected: dict[str, Run] = {}
    for spec in specs:
        for run in _select(runs, spec, runs_dir):
            selected.setdefault(run.id, run)
    return list(selected.values())


_SLICE = re.compile(r"(-?\d+)?:(-?\d+)?\Z")
_MAX_LISTED = 10


def _select(runs: list[Run], spec: str, runs_dir: str) -> list[Run]:
    if not spec:
        raise RunLookupError("a run id, name or index is required")
    if spec.isdigit() and 1 <= int(spec) <= len(runs):
        return [runs[int(spec) - 1]]
    m = _SLICE.match(spec)
    if m:
        start, end = m.group(1), m.group(2)
        first = (int(start) - 1 if int(start) > 0 else int(start)) if start else None
        selected = runs[first : int(end) if end else None]
        if not selected:
            raise RunLookupError(f"no runs in {spec!r} ({len(runs)} runs in {runs_dir})")
        return selected
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
    return matches


def resolve_run_id(runs_dir: str, run_id: object) -> Run:
    """The run with exactly this id directly under runs_dir.

    Strict, for ids that arrive from outside (task messages): anything that
    is not a canonical run id, or whose meta dir resolves outside runs_dir
    (through a symlink, say), is rejected with RunLookupError.
    """
    if not is_run_id(run_id):
        raise RunLookupError(f"not a run id: {str(run_id)[:80]!r}")
    assert isinstance(run_id, str)
    root = os.path.realpath(runs_dir)
    meta_dir = os.path.join(root, run_id + ".meta")
    if os.path.dirname(os.path.realpath(meta_dir)) != root:
        raise RunLookupError(f"run {run_id} resolves outside the runs dir {root}")
    for path in (meta_dir, os.path.join(root, run_id)):
        if os.path.islink(path):
            raise RunLookupError(f"run {run_id}: {os.path.basename(path)} is a symlink")
    if not os.path.isdir(meta_dir):
        raise RunLookupError(f"no run {run_id} in {root}")
    try:
        run = run_for_meta_dir(meta_dir)
    except RunFormatError as e:
        raise RunLookupError(str(e)) from None
    if run.id != run_id:
        raise RunLookupError(f"run {run_id}: its meta id file says {run.id!r}")
    return run
