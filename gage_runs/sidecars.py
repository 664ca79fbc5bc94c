"""A run's sidecars: `<id>.project` and the user attributes in `<id>.user/`."""

from __future__ import annotations

import getpass
import json
import os
import threading
import time
from typing import Any

from .fsmode import make_dirs, write_text
from .meta import run_summary
from .names import uuid4_string
from .types import Run, RunSummary

_ms_lock = threading.Lock()
_last_ms = 0


def associate_project(run: Run, project_dir: str) -> None:
    """Write `<id>.project`: `file:<path>`, relative if the runs dir is inside."""
    project_dir = os.path.abspath(project_dir)
    runs_parent = run.runs_dir
    if runs_parent.startswith(project_dir):
        ref = os.path.relpath(project_dir, runs_parent)
    else:
        ref = project_dir
    write_text(run.run_dir + ".project", f"file:{ref}", readonly=False)


def run_user_dir(run: Run) -> str:
    return run.run_dir + ".user"


def _now_ms() -> int:
    global _last_ms
    with _ms_lock:
        _last_ms = max(time.time_ns() // 1_000_000, _last_ms + 1)
        return _last_ms


def _log_entry_id() -> str:
    """A time-ordered id: a ULID (48-bit ms + 80 random bits) as a UUID4."""
    random_bits = int.from_bytes(os.urandom(10), "big")  # not `secrets`: it loads OpenSSL
    return uuid4_string((_now_ms() << 80) | random_bits)


def _author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "__unknown__"


def log_user_attrs(run: Run, attrs: dict[str, Any], delete: list[str] | None = None) -> None:
    """Append an entry to the run's user attribute log (as `gage` does)."""
    if not attrs and not delete:
        return
    user_dir = run_user_dir(run)
    make_dirs(user_dir)
    entry = {"author": _author(), "set": attrs, "delete": delete or []}
    write_text(os.path.join(user_dir, _log_entry_id() + ".json"), json.dumps(entry))


def run_user_attrs(run: Run) -> dict[str, Any]:
    """User attributes, replayed from the log in file name order."""
    user_dir = run_user_dir(run)
    if not os.path.isdir(user_dir):
        return {}
    attrs: dict[str, Any] = {}
    for name in sorted(os.listdir(user_dir)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(user_dir, name)) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            continue
        attrs.update(entry.get("set") or {})
        for key in entry.get("delete") or []:
            attrs.pop(key, None)
    return attrs


def run_label(run: Run, summary: RunSummary | None = None) -> str | None:
    """The user attribute `label`, else the summary's run label, as Gage shows it."""
    summary = summary or run_summary(run)
    label = run_user_attrs(run).get("label") or summary.get_run_attrs().get("label")
    return str(label) if label else None
