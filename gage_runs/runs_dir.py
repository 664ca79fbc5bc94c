"""A runs dir: checking it, listing its runs, and finding one run."""

from __future__ import annotations

import itertools
import os
import re
import stat
from dataclasses import dataclass, replace

from .errors import RunFormatError, RunLookupError, RunsDirError
from .meta import read_small, run_for_meta_dir
from .names import is_run_id, run_name_for_id
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


@dataclass(slots=True)
class RunEntry:
    """A `<id>.meta` entry of a runs dir, known from its name and one stat.

    `load()` reads the run (its `opref` and `id`): listings open files only
    for the entries they show. Not frozen: a listing makes one per run, and
    a frozen dataclass is several times dearer to make.
    """

    id: str  # from the entry's name
    meta_dir: str
    sort_key: tuple[int, int]

    @property
    def name(self) -> str:
        return run_name_for_id(self.id)

    def load(self) -> Run | None:
        """The run, or None if the entry is not a valid run meta dir."""
        try:
            return run_for_meta_dir(self.meta_dir)
        except RunFormatError:
            return None


def scan_runs(runs_dir: str, *, deleted: bool = False) -> list[RunEntry]:
    """The runs dir's run entries, newest first, without opening any file.

    Sorted by the modification time of the first of `started`, `staged`,
    `initialized` in the meta dir: one `stat` per run (two or three for a
    run that has not started), no open. These are the files Gage sorts by,
    and each is written once with the time it holds, so their mtimes order
    runs as their contents do. Runs whose mtimes are equal (a coarse file
    system clock) are ordered by the timestamps the files hold. Copies
    that reset mtimes list in the order they were copied. Entries whose
    name is not `<hex id>.meta` are skipped, as Gage skips them; an entry
    whose `opref` cannot be read is skipped only when it is loaded.
    """
    return newest_first(_unsorted(runs_dir, deleted))


def _unsorted(runs_dir: str, deleted: bool = False) -> list[tuple[str, str]]:
    """(id, meta dir) of the run entries: one directory listing."""
    suffix = ".meta.deleted" if deleted else ".meta"
    try:
        with os.scandir(runs_dir) as it:
            found = [(e.name[: -len(suffix)], e.path) for e in it if e.name.endswith(suffix)]
    except FileNotFoundError:
        return []
    return [(run_id, path) for run_id, path in found if _HEX_PREFIX.match(run_id)]


def newest_first(found: list[tuple[str, str]]) -> list[RunEntry]:
    """Entries for (id, meta dir) pairs, sorted as `scan_runs` says."""
    entries = [RunEntry(run_id, path, (_stamp_mtime(path), 0)) for run_id, path in found]
    entries.sort(key=lambda e: e.sort_key[0], reverse=True)
    return _break_ties(entries)


_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{8}")


def _name(run_id: str) -> str:
    return run_name_for_id(run_id)
_STAMPS = ("started", "staged", "initialized")


def _stamp_mtime(meta_dir: str) -> int:
    for name in _STAMPS:
        try:
            return os.stat(f"{meta_dir}/{name}").st_mtime_ns
        except OSError:
            continue
    return 0


def _break_ties(entries: list[RunEntry]) -> list[RunEntry]:
    """Order runs with equal mtimes by the timestamps their files hold (Gage's key)."""
    result: list[RunEntry] = []
    for _, group in itertools.groupby(entries, key=lambda e: e.sort_key[0]):
        tied = list(group)
        if len(tied) > 1:
            tied = [replace(e, sort_key=(e.sort_key[0], _stamp(e.meta_dir))) for e in tied]
            tied.sort(key=lambda e: e.sort_key[1], reverse=True)
        result.extend(tied)
    return result


def _stamp(meta_dir: str) -> int:
    """The sort key Gage uses: started, else staged, else initialized."""
    for name in _STAMPS:
        try:
            return int(read_small(os.path.join(meta_dir, name)).rstrip())
        except (OSError, ValueError):
            continue
    return 0


def list_runs(runs_dir: str, *, deleted: bool = False) -> list[Run]:
    """Runs in a runs dir, newest first (see `scan_runs`).

    An entry is a run if its name ends with `.meta` and it has a valid
    opref and a hex id; anything else is skipped, as Gage does.
    """
    return [run for entry in scan_runs(runs_dir, deleted=deleted) if (run := entry.load())]


def find_run(runs_dir: str, spec: str) -> Run:
    """The one run `spec` names (see `select_runs`)."""
    selected = _select(_Listing(runs_dir), spec)
    if len(selected) > 1:
        raise RunLookupError(f"{spec!r} names {len(selected)} runs; name one run")
    return selected[0]


def select_runs(runs_dir: str, specs: list[str]) -> list[Run]:
    """The runs the specs name, in the order named, each once.

    A spec is, as in Gage: a 1-based index into the newest-first listing
    (`1` is the latest run), a slice `a:b` of it, or a run id, id prefix,
    name or name prefix. An exact id or name wins over prefixes; a prefix
    that matches several runs is an error listing them.

    A full run id is looked up directly, without listing the runs dir;
    ids and names are matched on entry names, and only the runs selected
    are read.
    """
    listing = _Listing(runs_dir)
    selected: dict[str, Run] = {}
    for spec in specs:
        for run in _select(listing, spec):
            selected.setdefault(run.id, run)
    return list(selected.values())


class _Listing:
    """A runs dir's entries, scanned once and only if a spec needs them."""

    def __init__(self, runs_dir: str):
        self.runs_dir = runs_dir
        self._entries: list[RunEntry] | None = None

    @property
    def entries(self) -> list[RunEntry]:
        if self._entries is None:
            self._entries = scan_runs(self.runs_dir)
        return self._entries

    def matching(self, spec: str) -> list[RunEntry]:
        """Entries whose id or name is `spec`, else starts with it; newest first.

        Matched on entry names, so only the matches are stat'ed to sort them.
        """
        if self._entries is not None:
            found = [(e.id, e.meta_dir) for e in self._entries]
        else:
            found = _unsorted(self.runs_dir)
        exact = [(i, p) for i, p in found if spec in (i, _name(i))]
        return newest_first(exact or [
            (i, p) for i, p in found if i.startswith(spec) or _name(i).startswith(spec)
        ])

    def direct(self, run_id: str) -> Run | None:
        """The run with this full id, found without listing; None if there is none."""
        meta_dir = os.path.join(self.runs_dir, run_id + ".meta")
        if not os.path.isdir(meta_dir):
            return None
        return RunEntry(run_id, meta_dir, (0, 0)).load()


_SLICE = re.compile(r"(-?\d+)?:(-?\d+)?\Z")
_MAX_LISTED = 10


def _select(listing: _Listing, spec: str) -> list[Run]:
    if not spec:
        raise RunLookupError("a run id, name or index is required")
    if is_run_id(spec):
        run = listing.direct(spec)
        if run is not None:
            return [run]
    runs_dir = listing.runs_dir
    m = _SLICE.match(spec)
    if spec.isdigit() and 1 <= int(spec) <= len(listing.entries):
        return [_load(listing.entries[int(spec) - 1], spec)]
    if m:
        entries = listing.entries
        start, end = m.group(1), m.group(2)
        first = (int(start) - 1 if int(start) > 0 else int(start)) if start else None
        selected = [run for e in entries[first : int(end) if end else None] if (run := e.load())]
        if not selected:
            raise RunLookupError(f"no runs in {spec!r} ({len(entries)} runs in {runs_dir})")
        return selected
    runs = [run for e in listing.matching(spec) if (run := e.load())]
    if not runs:
        raise RunLookupError(f"no run matches {spec!r} in {runs_dir}")
    if len(runs) > 1:
        listed = ", ".join(f"{run.name} ({run.id[:8]})" for run in runs[:_MAX_LISTED])
        more = f" and {len(runs) - _MAX_LISTED} more" if len(runs) > _MAX_LISTED else ""
        raise RunLookupError(
            f"{spec!r} matches {len(runs)} runs: {listed}{more}; use a longer prefix"
        )
    return runs


def _load(entry: RunEntry, spec: str) -> Run:
    run = entry.load()
    if run is None:
        raise RunLookupError(f"run {spec} ({entry.meta_dir}) is not a readable run")
    return run


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
    # A run id has no separator, so the meta dir is directly under root
    # unless it is a symlink: one lstat says both that and that it is a dir.
    meta_mode = _lmode(meta_dir)
    if meta_mode is not None and stat.S_ISLNK(meta_mode):
        raise RunLookupError(f"run {run_id} resolves outside the runs dir {root} "
                             f"({run_id}.meta is a symlink)")
    if meta_mode is None or not stat.S_ISDIR(meta_mode):
        raise RunLookupError(f"no run {run_id} in {root}")
    run_mode = _lmode(os.path.join(root, run_id))
    if run_mode is not None and stat.S_ISLNK(run_mode):
        raise RunLookupError(f"run {run_id}: {run_id} is a symlink")
    try:
        run = run_for_meta_dir(meta_dir)
    except RunFormatError as e:
        raise RunLookupError(str(e)) from None
    if run.id != run_id:
        raise RunLookupError(f"run {run_id}: its meta id file says {run.id!r}")
    return run


def _lmode(path: str) -> int | None:
    """The mode of `path` itself (a link is not followed); None if it cannot be seen.

    Any OSError is None, as `os.path.isdir`/`islink` had it: a run that
    cannot be looked at is no run (RunLookupError), never a crash.
    """
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None
