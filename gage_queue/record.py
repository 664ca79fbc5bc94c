"""The run record: a queue-owned run's committed state, in its lock file.

The record is the JSON content of `<id>.meta/queue/lock`. It is written
only through the descriptor that holds the run lock (`lock.RunLock`) and,
for decisions, read through that same descriptor after the lock is taken:
taking a POSIX lock makes an NFS or GlusterFS client revalidate the file's
data, so no client cache can feed a stale phase or exit code into a
decision. Readers that only display it read it without the lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any

from gage_queue.states import EndReason, RunState

RECORD_SIZE_LIMIT = 16384


@dataclass(frozen=True)
class RunRecord:
    """What the keeper and finalize commit about a run."""

    state: RunState = RunState.QUEUED
    exit_code: int | None = None
    reason: EndReason | None = None
    detail: str | None = None  # the reason in words: "exit 3", "by ann@laptop"
    host: str | None = None  # where its keeper runs or ran
    node: str | None = None  # the Celery worker node that started it
    keeper_pid: int | None = None
    keeper_started: float | None = None  # the keeper's start time, against pid reuse
    pid: int | None = None  # the run command's pid (its process group)
    slot: str | None = None  # "slot 1", "slot 1, gpus 0,1"
    gpus: list[str] | None = None  # the GPUs it runs on, in CUDA_VISIBLE_DEVICES order
    placed_node: str | None = None  # queued: the node the scheduler sent it to
    placed_gpus: list[str] | None = None  # queued: the GPUs it was given there
    placed_at: int | None = None  # epoch µs of the placement
    started: int | None = None  # epoch µs
    ended: int | None = None
    finalize_attempts: int = 0
    finalize_error: str | None = None
    finalize_tried: int | None = None  # epoch µs of the last attempt

    def but(self, **changes: Any) -> RunRecord:
        return replace(self, **changes)

    def encode(self) -> bytes:
        data = {name: value for name in _FIELD_NAMES if (value := getattr(self, name)) is not None}
        data["state"] = self.state.value
        if self.reason is not None:
            data["reason"] = self.reason.value
        return (json.dumps(data, sort_keys=True) + "\n").encode()


_FIELD_NAMES = tuple(f.name for f in fields(RunRecord))
_FIELDS = frozenset(_FIELD_NAMES)


def decode_record(data: bytes) -> RunRecord | None:
    """The record in `data`; None for an empty file. Trailing bytes are ignored.

    A record that cannot be read (corrupt, or from a newer version) is
    None too: the run is then treated as having no record, never as ended.
    """
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        raw, _ = json.JSONDecoder().raw_decode(text)
        fields_ = {k: v for k, v in raw.items() if k in _FIELDS}
        fields_["state"] = RunState(fields_.get("state", RunState.QUEUED.value))
        if fields_.get("reason") is not None:
            fields_["reason"] = EndReason(fields_["reason"])
        return RunRecord(**fields_)
    except (ValueError, TypeError, AttributeError):
        return None
