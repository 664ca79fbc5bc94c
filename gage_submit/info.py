"""What the commands show about a run, read from its meta dir (no broker needed)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from gage_queue.attempts import attempt_of, retries_left
from gage_queue.layout import RERUN_OF, RUN_QUEUE_DIR, SUBMITTED
from gage_queue.queue_meta import read_submitted
from gage_queue.record import RunRecord
from gage_queue.requests import request_from
from gage_queue.snapshots import QueueState, read_queue_state
from gage_queue.states import WAITING_TO_START, GageFacts, RunState
from gage_queue.waiting import read_waiting_entry
from gage_runs.errors import RunFormatError
from gage_runs.meta import meta_config, read_small, run_summary
from gage_runs.names import is_run_id
from gage_runs.sidecars import run_label
from gage_runs.types import Run, RunSummary

from .lineage import read_rerun_of

TIMESTAMPS = ("initialized", "staged", "started", "stopped")


@dataclass(slots=True)
class RunInfo:
    """A run's fields as `list` and `show` display them.

    Not frozen: `list -a` makes thousands, and a frozen dataclass is four
    times dearer to make.
    """

    id: str
    name: str
    op: str
    status: RunState  # a str: JSON has its name
    host: str | None
    node: str | None
    reason: str | None
    label: str | None
    queue: str | None
    schedule: str | None
    time_limit: float | None
    submitted: int | None
    initialized: int | None
    staged: int | None
    started: int | None
    stopped: int | None
    duration: float | None  # seconds from started to stopped, or so far while running
    exit_code: int | None
    run_dir: str
    config: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    rerun_of: str | None = None
    priority: int | None = None  # a queued run's current one (`gage-submit priority`)
    gpus: int | None = None  # None: one on a GPU worker (or not the queue's run)
    waiting_reason: str | None = None  # why a queued run waits: `show` says it
    attempt: str | None = None  # "2/3": this attempt of a run with retries
    retry_of: str | None = None  # the id of the attempt it retries

    def as_json(self) -> dict[str, Any]:
        """The fields with timestamps as ISO 8601 local times."""
        data = asdict(self)
        for name in ("submitted", *TIMESTAMPS):
            data[name] = iso_time(data[name])
        return data


def run_info(run: Run, *, namespace: str | None = None, detail: bool = False,
             brief: bool = False) -> RunInfo:
    """Collect a run's fields; `detail` adds config and summary.

    The op is shown without its namespace when that is `namespace` (the
    current project's), as Gage shows it. The meta dir is listed once and
    only files that exist are read (`_MetaFiles`): a few opens per run.
    `brief` reads only what the runs table shows (status, host, reason,
    label, started): queue, schedule, time limit, the other times,
    rerun_of, priority and GPUs are left None. A queued run's priority is
    its waiting entry's (`gage_queue.waiting`: `gage-submit priority`
    changes it there), one more small read.
    """
    files = _MetaFiles(run)
    exit_code = files.exit_code()
    state = _queue_state(run, files, exit_code)
    submitted = (read_submitted(run) or {}) if SUBMITTED in files.queue and not brief else {}
    times = () if brief else TIMESTAMPS
    summary = run_summary(run) if "summary.json" in files.names else RunSummary({})
    priority, gpus = _request(run, state.state, submitted)
    opref = run.opref
    return RunInfo(
        id=run.id,
        name=run.name,
        op=opref.op_name if opref.op_ns == namespace else opref.get_full_name(),
        status=state.state,
        host=state.host,
        node=state.node,
        reason=state.reason,
        label=run_label(run, summary),
        queue=submitted.get("queue"),
        schedule=submitted.get("schedule"),
        time_limit=submitted.get("time_limit"),
        submitted=submitted.get("time"),
        initialized=files.timestamp("initialized") if "initialized" in times else None,
        staged=files.timestamp("staged") if "staged" in times else None,
        started=files.timestamp("started"),
        stopped=files.timestamp("stopped") if "stopped" in times else None,
        duration=_duration(state.record, files),
        exit_code=exit_code,
        run_dir=run.run_dir,
        config=_config(run) if detail else None,
        summary=summary.as_json() if detail else {},
        rerun_of=read_rerun_of(run) if RERUN_OF in files.queue and not brief else None,
        priority=priority,
        gpus=gpus,
        attempt=_attempt(submitted),
        retry_of=submitted.get("retry_of") if is_run_id(submitted.get("retry_of")) else None,
    )


def _attempt(submitted: dict[str, Any]) -> str | None:
    """"2/3" for the second of at most three attempts; None without retries."""
    retries = request_from(submitted).retries if submitted else 0
    if not retries and attempt_of(submitted) == 1:
        return None
    return f"{attempt_of(submitted)}/{attempt_of(submitted) + retries_left(submitted)}"


def _request(run: Run, state: RunState, submitted: dict[str, Any]) -> tuple[int | None, int | None]:
    """The run's priority and GPUs: as submitted, a waiting run's priority as it is now."""
    if not submitted:
        return None, None
    request = request_from(submitted)
    priority = request.priority
    if state in WAITING_TO_START:
        entry = read_waiting_entry(run.runs_dir, run.id)
        if entry is not None:
            priority = entry.priority
    return priority, request.gpus


def _duration(record: RunRecord | None, files: _MetaFiles) -> float | None:
    """From the record for the queue's runs (live while running), else Gage's timestamps."""
    if record is not None and record.started:
        end = record.ended or (time.time_ns() // 1000 if record.state is RunState.RUNNING else None)
        return None if end is None else max(0.0, (end - record.started) / 1e6)
    started, stopped = files.timestamp("started"), files.timestamp("stopped")
    return None if started is None or stopped is None else max(0.0, (stopped - started) / 1e6)


class _MetaFiles:
    """A meta dir read for display: its names (and `queue/`'s) listed once, then only
    the files that exist are opened, with plain system calls (`read_small`)."""

    def __init__(self, run: Run):
        self.meta_dir = run.meta_dir
        self.names = _names(self.meta_dir)
        self.queue = _names(os.path.join(self.meta_dir, RUN_QUEUE_DIR)) \
            if RUN_QUEUE_DIR in self.names else frozenset()

    def timestamp(self, name: str) -> int | None:
        return self._int(name) if name in self.names else None

    def exit_code(self) -> int | None:
        return self._int("proc", "exit") if "proc" in self.names else None

    def _int(self, *parts: str) -> int | None:
        try:
            return int(read_small(os.sep.join((self.meta_dir, *parts))).rstrip())
        except (OSError, ValueError):
            return None


def _names(path: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return frozenset()


def _queue_state(run: Run, files: _MetaFiles, exit_code: int | None) -> QueueState:
    """`read_queue_state` given the facts this one listing of the meta dir has.

    Only `proc/lock` costs a stat, and only without an exit code; the lock
    is probed only where the record leaves the state to it.
    """
    proc_lock = (
        exit_code is None and "proc" in files.names
        and os.path.exists(os.path.join(files.meta_dir, "proc", "lock"))
    )
    facts = GageFacts(
        exit_code=exit_code, proc_lock=proc_lock, staged="staged" in files.names,
        started="started" in files.names, initialized="initialized" in files.names,
    )
    return read_queue_state(run, facts, submitted=SUBMITTED in files.queue)


def _config(run: Run) -> dict[str, Any] | None:
    try:
        return meta_config(run)
    except RunFormatError:
        return None


def iso_time(timestamp: int | None) -> str | None:
    """Epoch microseconds as an ISO 8601 local time to the second."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp / 1e6).astimezone().isoformat(timespec="seconds")


def short_time(timestamp: int | None) -> str:
    """Epoch microseconds as `YYYY-MM-DD HH:MM:SS` local time, or `""`."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp // 1_000_000))


def run_output_path(run: Run) -> str:
    """The run's live output: `output/40_run` in its meta dir."""
    return os.path.join(run.meta_dir, "output", "40_run")


TAIL_BYTES = 65536
"""How much of the end of a run's output `output_tail` reads, at most."""


def output_tail(run: Run, count: int) -> list[str]:
    """The last `count` lines of the run's output, escaped for display (`shown`).

    Reads at most the last TAIL_BYTES of `output/40_run`; a missing file has no lines.
    """
    from gage_queue.text import shown

    try:
        with open(run_output_path(run), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read(TAIL_BYTES)
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(data) == TAIL_BYTES and size > TAIL_BYTES and lines:
        lines = lines[1:]  # the first line read may be cut: leave it out
    return [shown(line) for line in lines[-count:]]
