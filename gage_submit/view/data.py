"""What the web view shows, read from the runs dir: no web framework here.

Every text that comes from a run (names, labels, op names, flag names and
values, summary keys, output, file names, reasons) goes through `text`
(`gage_queue.text.shown`: control characters and bidi overrides made
visible) before it leaves this module; the templates then escape it for
HTML (Jinja2's autoescape) and the scripts only ever set `textContent`.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gage_queue.active import newest_first
from gage_queue.durations import format_duration
from gage_queue.layout import (
    consumer_lock,
    consumers_dir,
    host_alive_lock,
    host_dir,
    hosts_dir,
    node_locks_dir,
)
from gage_queue.locks import probe_path
from gage_queue.queue_meta import read_submitted
from gage_queue.snapshots import read_queue_state
from gage_queue.states import ENDED, WAITING_TO_START, RunState
from gage_queue.text import shown
from gage_runs.errors import RunLookupError
from gage_runs.file_select import BINARY_EXTENSIONS, TEXT_EXTENSIONS
from gage_runs.names import is_run_id
from gage_runs.runs_dir import RunEntry, resolve_run_id, scan_runs
from gage_runs.types import Run

from ..filters import RunFilter
from ..info import RunInfo, run_info, run_output_path, short_time
from ..render import detail_fields, format_value

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
COLUMNS = ("name", "op", "started", "time", "status", "host", "worker", "reason", "label")
"""The runs table's columns: `list`'s, in its order."""
DEFAULT_SORT = "-started"


def text(value: object, limit: int | None = 400) -> str:
    """Run-supplied text as it may be shown: control characters visible, cut at `limit`."""
    return "" if value is None else shown(value, limit)


class NotFound(Exception):
    """No such run, or no such file in it: 404."""


class Refused(Exception):
    """A path that leaves the run's dir, a link, or not a regular file: 403."""


# ---------------------------------------------------------------------
# the runs table


@dataclass(frozen=True)
class RunsQuery:
    """The filters, sort and page of the runs table (the page's query string)."""

    ops: tuple[str, ...] = ()
    statuses: tuple[RunState, ...] = ()
    label: str | None = None
    user: str | None = None
    schedule: str | None = None
    sort: str = DEFAULT_SORT
    page: int = 1
    size: int = PAGE_SIZE

    @classmethod
    def parse(cls, params: Any) -> RunsQuery:
        """From a multi-dict of query parameters; unknown values fall back to defaults."""
        def one(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            return value or None

        statuses = []
        for value in params.getlist("status"):
            with contextlib.suppress(ValueError):
                statuses.append(RunState(value))
        sort = one("sort") or DEFAULT_SORT
        if sort.lstrip("-") not in COLUMNS:
            sort = DEFAULT_SORT
        return cls(
            ops=tuple(op for op in (v.strip() for v in params.getlist("op")) if op),
            statuses=tuple(statuses),
            label=one("label"),
            user=one("user"),
            schedule=one("schedule"),
            sort=sort,
            page=max(1, _int(one("page"), 1)),
            size=min(MAX_PAGE_SIZE, max(1, _int(one("n"), PAGE_SIZE))),
        )

    @property
    def where(self) -> RunFilter:
        return RunFilter(statuses=self.statuses, ops=self.ops, label=self.label,
                         schedule=self.schedule)

    @property
    def filtered(self) -> bool:
        return bool(self.where) or self.user is not None

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """The query string's pairs, with `changes` (page=, sort=) applied."""
        values = {"sort": self.sort, "page": self.page, "n": self.size, **changes}
        pairs = [("op", op) for op in self.ops] + [("status", s.value) for s in self.statuses]
        for name in ("label", "user", "schedule"):
            if getattr(self, name) is not None:
                pairs.append((name, getattr(self, name)))
        if values["sort"] != DEFAULT_SORT:
            pairs.append(("sort", values["sort"]))
        if values["page"] != 1:
            pairs.append(("page", str(values["page"])))
        if values["n"] != PAGE_SIZE:
            pairs.append(("n", str(values["n"])))
        return pairs


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dataclass
class RunsPage:
    rows: list[dict[str, Any]]
    total: int  # runs that match
    query: RunsQuery
    read: int  # runs read to make the page (for the bench and tests)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.size))


def row(index: int, info: RunInfo) -> dict[str, Any]:
    """A run's cells, as the table and its live updates show them."""
    return {
        "id": info.id if is_run_id(info.id) else "",  # only a real id makes a link
        "index": index,
        "name": text(info.name),
        "op": text(info.op),
        "started": short_time(info.started),
        "time": format_duration(info.duration),
        "status": info.status.value,
        "host": text(info.host),
        "worker": text(info.node),
        "reason": text(info.reason),
        "label": text(info.label),
    }


def runs_page(runs_dir: str, query: RunsQuery, namespace: str | None = None) -> RunsPage:
    """The page of the runs table that `query` asks for.

    In the listing's own order (newest or oldest first) and without
    filters, only the page's runs are read: the runs dir is ordered by one
    stat per run (`scan_runs`), then the page is sliced from it. Filters
    and other orders must look at every run: `listing.list_rows` does
    that, with `list`'s row cache for ended runs.
    """
    column, descending = query.sort.lstrip("-"), query.sort.startswith("-")
    start = (query.page - 1) * query.size
    if not query.filtered and column == "started":
        entries = scan_runs(runs_dir)
        numbered = list(enumerate(entries, 1))
        if not descending:
            numbered.reverse()
        rows = []
        for index, entry in numbered[start:start + query.size]:
            info = _brief_info(entry, namespace)
            if info is not None:
                rows.append(row(index, info))
        return RunsPage(rows, len(entries), query, min(query.size, max(0, len(entries) - start)))
    from ..listing import list_rows

    found, _ = list_rows(runs_dir, query.where, limit=None, namespace=namespace, detail=False)
    if query.user is not None:
        found = [(i, info) for i, info in found if run_user(info.run_dir) == query.user]
    if column != "started" or not descending:
        found = _sorted(found, column, descending)
    return RunsPage([row(i, info) for i, info in found[start:start + query.size]],
                    len(found), query, -1)


def _brief_info(entry: RunEntry, namespace: str | None) -> RunInfo | None:
    run = entry.load()
    return None if run is None else run_info(run, namespace=namespace, brief=True)


_SORT_FIELDS = {"name": "name", "op": "op", "started": "started", "time": "duration",
                "status": "status", "host": "host", "worker": "node", "reason": "reason",
                "label": "label"}


def _sorted(found: list[tuple[int, RunInfo]], column: str,
            descending: bool) -> list[tuple[int, RunInfo]]:
    """Rows sorted by a column; rows without a value last either way."""
    name = _SORT_FIELDS[column]
    present = [item for item in found if getattr(item[1], name) not in (None, "")]
    missing = [item for item in found if getattr(item[1], name) in (None, "")]
    present.sort(key=lambda item: (getattr(item[1], name), -item[0]), reverse=descending)
    return present + missing


def run_user(run_dir: str) -> str | None:
    """Who submitted the run: the owner of its meta dir (as the keeper's checks say)."""
    try:
        uid = os.stat(run_dir + ".meta").st_uid
    except OSError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# ---------------------------------------------------------------------
# one run


def find_run(runs_dir: str, run_id: str) -> Run:
    """The run with exactly this id under the runs dir, never a path; NotFound otherwise."""
    try:
        return resolve_run_id(runs_dir, run_id)
    except RunLookupError as e:
        raise NotFound(str(e)) from None


def run_detail(run: Run, namespace: str | None = None) -> dict[str, Any]:
    """Status with its reason, where and when it ran, queue, flags, config and metrics."""
    info = run_info(run, namespace=namespace, detail=True)
    summary = info.summary if isinstance(info.summary, dict) else {}
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    attributes = summary.get("attributes") if isinstance(summary.get("attributes"), dict) else {}
    fields = [(name, text(value)) for name, value in detail_fields(info)
              if name not in ("id", "name", "status", "reason", "label")]
    if info.duration is not None and "duration" not in dict(fields):
        fields.append(("duration", format_duration(info.duration)))
    return {
        "id": info.id,
        "name": text(info.name),
        "status": info.status.value,
        "reason": text(info.reason),
        "label": text(info.label),
        "fields": fields,
        "flags": _pairs(info.config or {}),
        "metrics": _pairs({k: _metric_value(v) for k, v in metrics.items()}),
        "attributes": _pairs(attributes),
        "ended": info.status in ENDED,
    }


def _pairs(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(text(key, 200), text(format_value(values[key]), 1000)) for key in sorted(values, key=str)]


def _metric_value(value: Any) -> Any:
    return value.get("value") if isinstance(value, dict) and "value" in value else value


# output: `logs -f` on a page

OUTPUT_TAIL_BYTES = 64 * 1024
OUTPUT_CHUNK_BYTES = 256 * 1024


class OutputReader:
    """Follow `<id>.meta/output/40_run`: its last lines at once, then what is added.

    The file is opened for each read without following a symlink and only
    if it is a regular file (a FIFO planted there cannot block the
    server). Bytes are decoded as UTF-8 across reads (a character split
    between two reads is kept whole), `\\r\\n` and a lone `\\r` end lines,
    and every other control character is made visible.
    """

    def __init__(self, run: Run):
        self.path = run_output_path(run)
        self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending_cr = False

    def tail(self, limit: int = OUTPUT_TAIL_BYTES) -> str:
        """The last whole lines within `limit` bytes; the reader then follows from the end."""
        data, size = self._read_from(None, limit)
        if size > limit:
            cut = data.find(b"\n")
            data = data[cut + 1:] if cut >= 0 else b""
        self.offset = size
        return self._decode(data)

    def since(self, offset: int) -> str:
        """What was added after byte `offset` (a reconnecting page's last event id)."""
        self.offset = max(0, offset)
        return self.more()

    def more(self) -> str:
        """What was added since the last read ('' if nothing)."""
        data, size = self._read_from(self.offset, OUTPUT_CHUNK_BYTES)
        if size < self.offset:  # truncated or replaced: start again
            self.offset = 0
            self._decoder.reset()
            data, size = self._read_from(0, OUTPUT_CHUNK_BYTES)
        self.offset += len(data)
        return self._decode(data)

    def _read_from(self, offset: int | None, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes from `offset` (None: the last `limit`), and the file's size."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return b"", 0
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return b"", 0
            size = st.st_size
            start = max(0, size - limit) if offset is None else offset
            if start >= size:
                return b"", size
            return os.pread(fd, min(limit, size - start), start), size
        finally:
            os.close(fd)

    def _decode(self, data: bytes) -> str:
        if not data:
            return ""
        value = self._decoder.decode(data)
        if self._pending_cr and value.startswith("\n"):
            value = value[1:]
        self._pending_cr = value.endswith("\r")
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        return "\n".join(shown(line, None) for line in value.split("\n"))


# files: confined to the run's dir

MAX_LISTED_FILES = 2000
MAX_SHOWN_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class RunFile:
    path: str  # relative to the run dir, '/'-separated, shown()
    size: int | None
    kind: str  # "file", "dir", "link" (inside the run dir), "outside" (a link out), "other"
    target: str | None = None  # a link's target, shown()

    @property
    def viewable(self) -> bool:
        return self.kind in ("file", "link")


def run_files(run: Run, limit: int = MAX_LISTED_FILES) -> tuple[list[RunFile], bool]:
    """The files under the run's dir (links listed, never followed), and whether cut."""
    root = _run_root(run)
    found: list[RunFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames
                                         if os.path.islink(os.path.join(dirpath, d))]:
            if len(found) >= limit:
                return found, True
            found.append(_run_file(root, os.path.join(dirpath, name)))
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return found, False


def _run_file(root: str, path: str) -> RunFile:
    rel = text(os.path.relpath(path, root).replace(os.sep, "/"), None)
    try:
        st = os.lstat(path)
    except OSError:
        return RunFile(rel, None, "other")
    if stat.S_ISLNK(st.st_mode):
        target = text(_readlink(path), 300)
        real = os.path.realpath(path)
        inside = _within(real, root) and os.path.isfile(real)
        return RunFile(rel, os.path.getsize(real) if inside else None,
                       "link" if inside else "outside", target)
    if stat.S_ISREG(st.st_mode):
        return RunFile(rel, st.st_size, "file")
    return RunFile(rel, None, "dir" if stat.S_ISDIR(st.st_mode) else "other")


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _run_root(run: Run) -> str:
    """The run's dir, itself no link (`resolve_run_id` checked that), made real."""
    return os.path.realpath(run.run_dir)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


@dataclass
class FileView:
    path: str  # as shown
    size: int
    text: str | None  # None: not text
    truncated: bool = False
    link: str | None = None  # the link's target, if it is a link inside the run dir


def read_run_file(run: Run, relpath: str, limit: int = MAX_SHOWN_BYTES) -> FileView:
    """A file of the run's dir to show; Refused if the path leaves it, NotFound if missing.

    The path is a relative `/`-separated path with no `.`, `..` or empty
    part. A link is followed only if where it leads (every link on the
    way resolved) is a regular file inside the run's dir. The resolved
    path is then opened one component at a time from the run's dir,
    never following a link, so nothing swapped in meanwhile is followed
    either. Only regular files are read, and at most `limit` bytes.
    """
    parts = relpath.split("/")
    if not relpath or relpath.startswith("/") or "\\" in relpath or "\x00" in relpath or any(
        part in ("", ".", "..") for part in parts
    ):
        raise Refused(f"not a path inside the run's dir: {text(relpath, 200)}")
    root = _run_root(run)
    path = os.path.join(root, *parts)
    if not os.path.lexists(path):
        raise NotFound(f"no file {text(relpath, 200)} in run {run.id}")
    real = os.path.realpath(path)
    if not _within(real, root) or real == root:
        raise Refused(f"{text(relpath, 200)} leads outside the run's dir")
    link = text(_readlink(path), 300) if os.path.islink(path) else None
    fd = _open_beneath(root, os.path.relpath(real, root).split(os.sep))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{text(relpath, 200)} is not a regular file")
        data = os.pread(fd, min(limit, st.st_size), 0)
    finally:
        os.close(fd)
    shown_path = text(relpath, None)
    if not _looks_like_text(relpath, data):
        return FileView(shown_path, st.st_size, None, link=link)
    value = data.decode("utf-8", "replace")
    lines = value.replace("\r\n", "\n").split("\n")
    return FileView(shown_path, st.st_size, "\n".join(shown(line, None) for line in lines),
                    st.st_size > limit, link)


def _open_beneath(root: str, parts: list[str]) -> int:
    """Open root/parts... read-only, one component at a time, following no link."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError as e:
        raise NotFound(str(e)) from None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            next_fd = os.open(part, flags | (os.O_NONBLOCK if last else os.O_DIRECTORY),
                              dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError as e:
        os.close(fd)
        raise Refused(f"cannot open the file without following a link: {e.strerror}") from None
    return fd


def _looks_like_text(path: str, head: bytes) -> bool:
    """Gage's rule: a known extension decides, else no NUL and mostly printable bytes."""
    ext = os.path.splitext(path)[1].lower()
    if ext in TEXT_EXTENSIONS:
        return True
    if ext in BINARY_EXTENSIONS:
        return False
    sample = head[:1024]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError as e:
        return e.start >= len(sample) - 3  # a character cut at the sample's end


# ---------------------------------------------------------------------
# compare


def compare_runs(runs_dir: str, ids: Iterable[str]) -> list[Run]:
    """The runs named by id, each once, in the order given (unknown ids: NotFound)."""
    runs: dict[str, Run] = {}
    for run_id in ids:
        if run_id not in runs:
            runs[run_id] = find_run(runs_dir, run_id)
    return list(runs.values())


def compare_table(runs: list[Run], namespace: str | None = None) -> dict[str, Any]:
    """Flags and metrics side by side (`compare`'s table), with raw values for the plots."""
    from ..compare import compared, make_table

    table = make_table([compared(run, namespace) for run in runs])
    flags = [text(name, 200) for name in table.flag_names]
    metrics = [text(table.metric_column(name), 200) for name in table.metric_names]
    rows = []
    for one in table.rows:
        values = [*(one.flags.get(n) for n in table.flag_names),
                  *(one.metrics.get(n) for n in table.metric_names)]
        rows.append({
            "id": one.id, "name": text(one.name), "op": text(one.op),
            "status": one.status.value,
            "cells": [_cell(v) for v in values],
            "values": [_plot_value(v) for v in values],
        })
    return {"flags": flags, "metrics": metrics, "rows": rows}


def _cell(value: Any) -> str:
    return "" if value is None else text(format_value(value), 200)


def _plot_value(value: Any) -> float | str | None:
    """A number as it is; anything else as text (a category on a plot)."""
    if isinstance(value, bool):
        return text(str(value).lower())
    if isinstance(value, (int, float)):
        return value if value == value and abs(value) != float("inf") else None
    return None if value is None else text(format_value(value), 200)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def compare_csv(runs: list[Run], namespace: str | None = None) -> str:
    """`compare --csv`'s table; a text cell that a spreadsheet would take for a formula
    (`=`, `+`, `-`, `@`) gets a leading `'`, numbers stay numbers."""
    from ..compare import compared, format_cell, make_table

    table = make_table([compared(run, namespace) for run in runs])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", *(_csv_text(c) for c in table.columns)])
    for one in table.rows:
        writer.writerow([one.id, *(_csv_text(format_cell(v)) if not _is_number(v) else v
                                   for v in table.cells(one))])
    return out.getvalue()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _csv_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


# ---------------------------------------------------------------------
# the pool


@dataclass
class Slot:
    name: str  # "slot 0", "gpu 1"
    held: bool
    run: dict[str, str] | None = None  # id, name, status of the run holding it


@dataclass
class Node:
    name: str
    alive: bool | None  # None: no node lock (a worker named with -n)
    slots: list[Slot] = field(default_factory=list)


@dataclass
class Host:
    name: str
    alive: bool
    nodes: list[Node] = field(default_factory=list)
    gpus: list[Slot] = field(default_factory=list)


def pool_snapshot(runs_dir: str) -> dict[str, Any]:
    """Hosts, workers, slots and GPUs with the run holding each, queues with waiting runs.

    Read from `.gage-queue` (lock files, probed without taking them) and
    the active index: O(hosts' lock files + active runs), never the whole
    runs dir.
    """
    active = _active_runs(runs_dir)
    holders = {}
    for one in active:
        if one["state"] is RunState.RUNNING and one["slot"]:
            holders[(one["host"], one["node_dir"], one["slot"])] = one
    hosts = [_host(runs_dir, name, holders) for name in _listdir(hosts_dir(runs_dir))]
    queues: dict[str, dict[str, Any]] = {}
    for name in _listdir(consumers_dir(runs_dir)):
        if name.endswith(".lock"):
            queue = name[: -len(".lock")]
            queues[queue] = {"name": text(queue), "consumed": probe_path(
                consumer_lock(runs_dir, queue)), "waiting": []}
    for one in active:
        if one["state"] in WAITING_TO_START:
            queue = one["queue"]
            entry = queues.setdefault(queue, {"name": text(queue), "consumed": False,
                                              "waiting": []})
            entry["waiting"].insert(0, _run_ref(one))  # the oldest first: FIFO
    return {
        "hosts": [_host_json(h) for h in hosts],
        "queues": [queues[name] for name in sorted(queues)],
        "active": [{**_run_ref(one), "host": text(one["host"]), "worker": text(one["node"]),
                    "slot": text(one["slot"]), "queue": text(one["queue"])} for one in active],
    }


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _active_runs(runs_dir: str) -> list[dict[str, Any]]:
    found = []
    for run_id in newest_first(runs_dir):
        try:
            run = resolve_run_id(runs_dir, run_id)
        except RunLookupError:
            continue
        state = read_queue_state(run)
        record = state.record
        node = record.node if record else None
        found.append({
            "id": run.id, "name": run.name, "state": state.state,
            "host": record.host if record else None, "node": node,
            "node_dir": (node or "worker").replace("/", "_"),
            "slot": record.slot if record else None,
            "queue": str((read_submitted(run) or {}).get("queue") or "gage"),
        })
    return found


def _run_ref(one: dict[str, Any]) -> dict[str, str]:
    return {"id": one["id"], "name": text(one["name"]), "status": one["state"].value}


def _host(runs_dir: str, name: str, holders: dict) -> Host:
    path = host_dir(runs_dir, name)
    host = Host(text(name), probe_path(host_alive_lock(runs_dir, name)))
    node_locks = node_locks_dir(runs_dir, name)
    for entry in _listdir(path):
        full = os.path.join(path, entry)
        if entry.startswith("gpu-") and entry.endswith(".lock"):
            gpu = entry[len("gpu-"):-len(".lock")]
            host.gpus.append(_slot(full, f"gpu {gpu}", _any_holder(holders, name, f"gpu {gpu}")))
        elif full != node_locks and os.path.isdir(full) and not os.path.islink(full):
            lock = os.path.join(node_locks, entry + ".lock")
            node = Node(text(entry), probe_path(lock) if os.path.exists(lock) else None)
            slots = [s for s in _listdir(full) if s.startswith("slot-") and s.endswith(".lock")]
            for slot_file in sorted(slots, key=_slot_number):
                slot = f"slot {slot_file[len('slot-'):-len('.lock')]}"
                node.slots.append(_slot(os.path.join(full, slot_file), slot,
                                        holders.get((name, entry, slot))))
            host.nodes.append(node)
    return host


def _any_holder(holders: dict, host: str, slot: str) -> dict | None:
    """A GPU is per host: its holder on any node of the host."""
    for (h, _, s), one in holders.items():
        if h == host and s == slot:
            return one
    return None


def _slot_number(name: str) -> int:
    return _int(name[len("slot-"):-len(".lock")], 0)


def _slot(path: str, name: str, holder: dict | None) -> Slot:
    held = probe_path(path)
    return Slot(name, held, _run_ref(holder) if holder is not None and held else None)


def _host_json(host: Host) -> dict[str, Any]:
    def slot(s: Slot) -> dict[str, Any]:
        return {"name": s.name, "held": s.held, "run": s.run}

    return {
        "name": host.name, "alive": host.alive,
        "gpus": [slot(s) for s in host.gpus],
        "nodes": [{"name": n.name, "alive": n.alive, "slots": [slot(s) for s in n.slots]}
                  for n in host.nodes],
    }
