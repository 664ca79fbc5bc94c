"""The queue's meta files in `<id>.meta/queue/` (outside Gage's format).

The directory is shared-writable and so are its files (`gage_runs.fsmode`),
because the submitting user and the worker's account differ on a shared
runs dir. Gage's CLI ignores the directory.

| file | content |
|---|---|
| `submitted` | JSON: queue, time_limit (s or null), schedule (entry name or null), host, time (epoch µs); the request (`requests.RunRequest`: gpus, null for one where there are GPUs; priority; after, after_any, any_end; retries, retry_on; signal; preemptible); the attempt (attempt, retry_of, retried, preempted: `attempts`) |
| `enqueued` | epoch µs of the last enqueue |
| `cancel` | empty: no cancel; JSON (by, time): cancel requested |
| `lock` | the run lock; its content is the run record (`gage_queue.record`) |

Both `cancel` and `lock` are created at submit and afterwards only
written in place, never created or replaced: a client that has looked a
file up keeps finding it, so no cached "no such file" (NFS `lookupcache`)
can hide a cancel, and only the submitter ever creates a lock file.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

from gage_queue.layout import CANCEL, ENQUEUED, SUBMITTED, queue_file
from gage_queue.requests import DEFAULT_REQUEST, RunRequest
from gage_runs.fsmode import open_regular, writable_file_mode, write_text
from gage_runs.meta import make_run_timestamp
from gage_runs.types import Run


def _write(run: Run, name: str, text: str) -> None:
    write_text(queue_file(run, name), text, readonly=False)


def _read(run: Run, name: str) -> str | None:
    """The file's text, None if missing; UnsafePathError for a link or a non-regular file."""
    try:
        fd = open_regular(queue_file(run, name), os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, errors="replace") as f:
        return f.read()


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
    run: Run, *, queue: str, time_limit: float | None, schedule: str | None,
    request: RunRequest = DEFAULT_REQUEST, attempt: int = 1, retry_of: str | None = None,
    retried: int = 0, preempted: int = 0,
) -> dict[str, Any]:
    """Write `queue/submitted`; what it holds. `attempt` counts from 1; `retry_of` is the
    run this attempt retries; `retried`: the retries used so far (preemptions are not);
    `preempted`: how many attempts in a row before this one were preempted."""
    data = {
        "queue": queue,
        "time_limit": time_limit,
        "schedule": schedule,
        "gpus": request.gpus,
        "priority": request.priority,
        "after": list(request.after),
        "after_any": request.after_any,
        "any_end": list(request.any_end),
        "retries": request.retries,
        "retry_on": request.retry_on,
        "signal": str(request.warning) if request.warning else None,
        "preemptible": request.preemptible,
        "retried": retried,
        "preempted": preempted,
        "attempt": attempt,
        "retry_of": retry_of,
        "host": os.uname().nodename,  # socket.gethostname(), without importing socket
        "time": make_run_timestamp(),
    }
    _write(run, SUBMITTED, json.dumps(data, indent=2, sort_keys=True))
    return data


def set_submitted_priority(run: Run, priority: int) -> None:
    """Record a changed priority in `queue/submitted` too: what reconcile re-indexes a
    waiting run from (a priority only in the waiting index would be lost with it)."""
    data = read_submitted(run)
    if data is not None:
        data["priority"] = priority
        _write(run, SUBMITTED, json.dumps(data, indent=2, sort_keys=True))


def read_submitted(run: Run) -> dict[str, Any] | None:
    """The submission record, or None for a run not submitted to a queue."""
    return _read_json(run, SUBMITTED)


def write_enqueued(run: Run) -> None:
    _write(run, ENQUEUED, str(make_run_timestamp()))


def read_enqueued(run: Run) -> int | None:
    return _read_int(run, ENQUEUED)


def create_cancel_file(run: Run) -> None:
    """The empty cancel file, made at submit so it is never created later."""
    fd = open_regular(queue_file(run, CANCEL), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, writable_file_mode())
    except PermissionError:
        pass
    finally:
        os.close(fd)


def write_cancel(run: Run, *, preempted_by: str | None = None) -> None:
    """Ask for the run to stop: who asks, from where, when, and for which run if it is a
    preemption (`placement`); written in place."""
    request = {"by": requester(), "time": make_run_timestamp()}
    if preempted_by is not None:
        request["preempted_by"] = preempted_by
    data = json.dumps(request).encode()
    path = queue_file(run, CANCEL)
    try:
        fd = open_regular(path, os.O_WRONLY)
    except FileNotFoundError:  # submitted before cancel files were made at submit
        create_cancel_file(run)
        fd = open_regular(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_cancel(run: Run) -> dict[str, Any] | None:
    """The cancel request, or None; any content at all counts as a request."""
    text = _read(run, CANCEL)
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}



def requester() -> str:
    """`user@host` of this process, for records of who asked for what."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"
