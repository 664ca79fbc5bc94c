"""The queue's meta files in `<id>.meta/queue/` (outside Gage's format).

The directory is shared-writable and so are its files (`gage_runs.fsmode`),
because the submitting user and the worker's account differ on a shared
runs dir. Gage's CLI ignores the directory.

| file | content |
|---|---|
| `submitted` | JSON: queue, time_limit (s or null), schedule (entry name or null), host, time (epoch µs) |
| `enqueued` | epoch µs of the last enqueue |
| `cancel` | present: cancel requested (epoch µs) |
| `heartbeat` | JSON: host, pid, pgid, time (epoch µs) of the running process |
| `exit` | the run's exit code, written by exec for finalize |
| `lock` | the run lock file (`gage_worker.lock`) |
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from gage_runs.fsmode import write_text
from gage_runs.meta import make_run_timestamp, run_meta_path
from gage_runs.types import Run

QUEUE_DIR = "queue"


def queue_path(run: Run, name: str) -> str:
    """The path of a queue meta file of `run`."""
    return run_meta_path(run, QUEUE_DIR, name)


def _write(run: Run, name: str, text: str) -> None:
    write_text(queue_path(run, name), text, readonly=False)


def _read(run: Run, name: str) -> str | None:
    try:
        with open(queue_path(run, name)) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _read_json(run: Run, name: str) -> dict[str, Any] | None:
    text = _read(run, name)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _read_int(run: Run, name: str) -> int | None:
    text = _read(run, name)
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


def write_submitted(
    run: Run, *, queue: str, time_limit: float | None, schedule: str | None
) -> None:
    data = {
        "queue": queue,
        "time_limit": time_limit,
        "schedule": schedule,
        "host": socket.gethostname(),
        "time": make_run_timestamp(),
    }
    _write(run, "submitted", json.dumps(data, indent=2, sort_keys=True))


def read_submitted(run: Run) -> dict[str, Any] | None:
    """The submission record, or None for a run not submitted to a queue."""
    return _read_json(run, "submitted")


def write_enqueued(run: Run) -> None:
    _write(run, "enqueued", str(make_run_timestamp()))


def read_enqueued(run: Run) -> int | None:
    return _read_int(run, "enqueued")


def write_cancel(run: Run) -> None:
    _write(run, "cancel", str(make_run_timestamp()))


def cancel_requested(run: Run) -> bool:
    return os.path.exists(queue_path(run, "cancel"))


def write_heartbeat(run: Run, *, pid: int, pgid: int) -> None:
    data = {"host": socket.gethostname(), "pid": pid, "pgid": pgid, "time": make_run_timestamp()}
    _write(run, "heartbeat", json.dumps(data, sort_keys=True))


def read_heartbeat(run: Run) -> dict[str, Any] | None:
    return _read_json(run, "heartbeat")


def write_exit(run: Run, exit_code: int) -> None:
    _write(run, "exit", str(exit_code))


def read_exit(run: Run) -> int | None:
    """The exit code exec recorded, or None if exec has not finished."""
    return _read_int(run, "exit")
