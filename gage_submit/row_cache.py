"""`list`'s rows of ended runs, kept per user: a long listing reads one file, not every run.

An ended run (completed, error, terminated) does not change: its files
were written once. Its table row is kept in
`$XDG_CACHE_HOME/gage-queue/list/` (default `~/.cache`), one file per
runs dir, with what would show a change:

- the mtime of the run's meta dir, which changes when a file in it is
  added, replaced (every meta write renames a temp file into place) or
  removed: a new `summary.json`, a restaged `started`;
- the mtime of its `<id>.user/` dir, where labels go, or that it has none;
- the mtime of the timestamp file the listing sorts by (`scan_runs`),
  which a restarted run rewrites.

A kept row is used only if all three are unchanged, so it costs one
`stat` (two for a labelled run) instead of the six to ten file reads of
a run. On NFS a stat may be as old as the client's attribute cache
(`acdirmax`, a minute by default), as every read of the runs dir there
is. A row is not kept when its meta dir changed within the last
`SETTLE_SECONDS` (a file system with a coarse clock could hide a second
change in the same tick), nor for a run that is not ended. Rows of
runs no longer in the runs dir are dropped. The cache is private (0600 in
a 0700 dir), written by rename, and ignored when unreadable;
`GAGE_LIST_CACHE=off` turns it off (`Settings.list_cache`: a value that
is not a switch is refused when settings load, exit 2).

`list` uses it only where it reads many runs (`-a`, a large `-n`, a
filter that must look at every run): for the latest 20, reading 20 runs
is cheaper than reading the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from typing import Any

from gage_queue.states import ENDED
from gage_runs.runs_dir import RunEntry
from gage_runs.types import OpRef

from .info import RunInfo

SETTLE_SECONDS = 2.0
WORTH_IT = 100
"""Rows to read from which the cache is used (below, reading the runs is cheaper)."""

_VERSION = 1
_ENDED_BY_NAME = {state.value: state for state in ENDED}  # only ended runs' rows are kept
_FIELDS = ("name", "status", "host", "node", "reason", "label", "started", "duration",
           "exit_code", "run_dir")


class RowCache:
    """The kept rows of one runs dir, checked against each entry's stats."""

    def __init__(self, runs_dir: str, path: str | None, rows: dict[str, list[Any]]):
        self.runs_dir = runs_dir
        self.path = path
        self._rows = rows
        self._changed = False
        self._now = time.time_ns()
        self._labelled: set[str] | None = None

    @classmethod
    def load(cls, runs_dir: str, enabled: bool | None = None) -> RowCache:
        """This user's cache for `runs_dir`; an empty one if there is none or it is unusable.

        `enabled` is `Settings.list_cache` (default: from the environment);
        a cache that is off is empty and never saved.
        """
        path = _cache_path(runs_dir, enabled)
        rows: dict[str, list[Any]] = {}
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
                if data.get("version") == _VERSION and isinstance(data.get("rows"), dict):
                    rows = data["rows"]
            except (OSError, ValueError, AttributeError):
                pass
        return cls(runs_dir, path, rows)

    def get(self, entry: RunEntry, namespace: str | None) -> tuple[RunInfo, OpRef] | None:
        """The kept row of `entry` and its op, if it is still what the run shows."""
        kept = self._rows.get(entry.id)
        if not isinstance(kept, list) or len(kept) != 6:
            return None
        meta_ns, user_ns, stamp_ns, op_ns, op_name, fields = kept
        if stamp_ns != entry.sort_key[0] or _mtime(entry.meta_dir) != meta_ns:
            return None
        if self._user_mtime(entry) != user_ns:
            return None
        try:
            opref = OpRef(op_ns, op_name)
            # _FIELDS, in order; RunInfo made positionally (a long listing makes thousands)
            name, status, host, node, reason, label, started, duration, exit_code, run_dir = fields
            info = RunInfo(
                entry.id, name, op_name if op_ns == namespace else opref.get_full_name(),
                _ENDED_BY_NAME[status],
                host, node, reason, label, None, None, None, None, None, None, started, None,
                duration, exit_code, run_dir,
            )
        except (TypeError, ValueError, KeyError):
            return None
        return info, opref

    def keep(self, entry: RunEntry, opref: OpRef, info: RunInfo) -> None:
        """Keep the row of an ended run whose meta dir has settled."""
        if info.status not in ENDED or self.path is None:
            return
        meta_ns = _mtime(entry.meta_dir)
        if meta_ns is None or self._now - meta_ns < SETTLE_SECONDS * 1e9:
            return
        user_ns = self._user_mtime(entry)
        fields = [getattr(info, name) for name in _FIELDS]
        self._rows[entry.id] = [meta_ns, user_ns, entry.sort_key[0], opref.op_ns,
                                opref.op_name, fields]
        self._changed = True

    def _user_mtime(self, entry: RunEntry) -> int:
        """The mtime of the run's `<id>.user/` (labels); 0 if it has none.

        Which runs have one comes from one listing of the runs dir, not a
        stat per run: most runs have no labels.
        """
        if self._labelled is None:
            try:
                names = os.listdir(self.runs_dir)
            except OSError:
                names = []
            self._labelled = {name[: -len(".user")] for name in names if name.endswith(".user")}
        if entry.id not in self._labelled:
            return 0
        return _mtime(entry.meta_dir[: -len(".meta")] + ".user") or 0

    def save(self, present: list[RunEntry]) -> None:
        """Write the cache if it changed, without the rows of runs no longer `present`."""
        ids = {entry.id for entry in present}
        gone = [run_id for run_id in self._rows if run_id not in ids]
        for run_id in gone:
            del self._rows[run_id]
        if self.path is None or not (self._changed or gone):
            return
        with contextlib.suppress(OSError):
            _write_private(self.path, json.dumps({"version": _VERSION, "rows": self._rows}))


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _cache_path(runs_dir: str, enabled: bool | None = None) -> str | None:
    """This user's cache file for `runs_dir`, or None when caching is off (`enabled`,
    default `Settings.list_cache` from the environment)."""
    if enabled is None:
        from gage_queue.settings import Settings

        enabled = Settings.from_env().list_cache
    if not enabled:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    try:
        st = os.stat(runs_dir)
    except OSError:
        return None
    key = f"{os.path.realpath(runs_dir)}\0{st.st_dev}\0{st.st_ino}"
    name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".json"
    return os.path.join(base, "gage-queue", "list", name)


def _write_private(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rows-")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
