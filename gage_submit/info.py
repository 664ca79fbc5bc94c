"""What the commands show about a run, read from its meta dir (no broker needed)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from gage_runs.errors import RunFormatError
from gage_runs.meta import meta_config, meta_exit_code, meta_timestamp, run_summary
from gage_runs.sidecars import run_label
from gage_runs.types import Run
from gage_worker.queue_meta import read_submitted
from gage_worker.runstate import ENDED, RunState
from gage_worker.runstate import FINISHED as QUEUE_FINISHED
from gage_worker.state import queue_state

from .lineage import read_rerun_of

STOPPED = tuple(sorted(state.value for state in ENDED))
FAILED = ("error", "terminated", "lost", "finalize-failed")
# Nothing of a lost run is alive: reconcile finalizes it as terminated, so it is over.
FINISHED = (*sorted(state.value for state in QUEUE_FINISHED), RunState.LOST.value)
TIMESTAMPS = ("initialized", "staged", "started", "stopped")


@dataclass(frozen=True)
class RunInfo:
    """A run's fields as `list` and `show` display them."""

    id: str
    name: str
    op: str
    status: str
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
    exit_code: int | None
    run_dir: str
    config: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    rerun_of: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The fields with timestamps as ISO 8601 local times."""
        data = asdict(self)
        for name in ("submitted", *TIMESTAMPS):
            data[name] = iso_time(data[name])
        return data


def run_info(run: Run, *, namespace: str | None = None, detail: bool = False) -> RunInfo:
    """Collect a run's fields; `detail` adds config and summary.

    The op is shown without its namespace when that is `namespace` (the
    current project's), as Gage shows it.
    """
    state = queue_state(run)
    submitted = read_submitted(run) or {}
    summary = run_summary(run)
    opref = run.opref
    return RunInfo(
        id=run.id,
        name=run.name,
        op=opref.op_name if opref.op_ns == namespace else opref.get_full_name(),
        status=state.status,
        host=state.host,
        node=state.node,
        reason=state.reason,
        label=run_label(run, summary),
        queue=submitted.get("queue"),
        schedule=submitted.get("schedule"),
        time_limit=submitted.get("time_limit"),
        submitted=submitted.get("time"),
        initialized=meta_timestamp(run, "initialized"),
        staged=meta_timestamp(run, "staged"),
        started=meta_timestamp(run, "started"),
        stopped=meta_timestamp(run, "stopped"),
        exit_code=meta_exit_code(run),
        run_dir=run.run_dir,
        config=_config(run) if detail else None,
        summary=summary.as_json() if detail else {},
        rerun_of=read_rerun_of(run),
    )


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
    return datetime.fromtimestamp(timestamp / 1e6).strftime("%Y-%m-%d %H:%M:%S")


def run_output_path(run: Run) -> str:
    """The run's live output: `output/40_run` in its meta dir."""
    return os.path.join(run.meta_dir, "output", "40_run")
