"""The waiting index: queued runs not yet started, and where the scheduler sent them.

`<runs>/.gage-queue/waiting/<id>` holds what the scheduler orders and
places by (queue, priority, GPUs, submit time, time limit) as JSON, so a
placement pass reads one small file per waiting run and no meta dir.
`placed/<id>` says which node and GPUs a pass gave a run whose keeper has
not started it yet: a pass counts those GPUs as taken until the keeper
holds their locks (or the placement is found stale).

- The submitter writes the entry with `queue/submitted`; `gage-submit
  priority` rewrites it.
- The keeper that starts the run, or ends it before it starts, removes
  both files; finalize removes them too (a run ended by a cancel or
  reconcile), and a pass drops the entries of runs it finds not queued.
- Like the active index, an entry is a hint: the run record decides, read
  under the run lock by whoever acts on it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from gage_queue.cancel import requested_ids
from gage_queue.errors import SettingsError
from gage_queue.layout import placed_dir, placed_entry, waiting_dir, waiting_entry
from gage_queue.locks import LockFileMissing, RunLock, try_lock
from gage_queue.queue_meta import set_submitted_priority
from gage_queue.record import RunRecord
from gage_queue.requests import (
    RunRequest,
    check_gpus,
    check_priority,
    request_from,
    time_limit_of,
)
from gage_queue.states import Event, RunState
from gage_runs.errors import RunLookupError
from gage_runs.fsmode import write_text
from gage_runs.meta import make_run_timestamp
from gage_runs.names import is_run_id
from gage_runs.runs_dir import resolve_run_id

if TYPE_CHECKING:
    from gage_queue.pool import PoolState


@dataclass(frozen=True)
class Waiting:
    """A waiting run as the scheduler sees it."""

    run_id: str
    queue: str
    submitted: int  # epoch µs
    gpus: int | None = None
    priority: int = 0
    time_limit: float | None = None
    after: tuple[str, ...] = ()  # waiting for these runs (`--after`) until released
    after_any: bool = False
    any_end: tuple[str, ...] = ()  # those of `after` that may end any way

    @property
    def request(self) -> RunRequest:
        return RunRequest(self.gpus, self.priority, self.after, self.after_any,
                          any_end=self.any_end)

    def released(self) -> Waiting:
        """The entry once the runs it waited for ended: it waits for nothing."""
        return replace(self, after=(), after_any=False, any_end=())

    def order(self) -> tuple[int, int, str]:
        """Higher priority first, then the earlier submit (ids break ties)."""
        return (-self.priority, self.submitted, self.run_id)


@dataclass(frozen=True)
class Placement:
    """Where a pass sent a run: its node (on `host`) and GPUs, and when."""

    run_id: str
    host: str
    node: str
    gpus: tuple[str, ...]
    at: int  # epoch µs


def add_waiting(runs_dir: str, entry: Waiting) -> None:
    data = {k: v for k, v in asdict(entry).items() if k != "run_id"}
    data["after"] = list(entry.after)
    data["any_end"] = list(entry.any_end)
    write_text(waiting_entry(runs_dir, entry.run_id), json.dumps(data, sort_keys=True),
               readonly=False)


def read_waiting_entry(runs_dir: str, run_id: str) -> Waiting | None:
    """The run's entry; None if it has none or it cannot be read."""
    try:
        with open(waiting_entry(runs_dir, run_id), "rb") as f:
            return _decode_waiting(run_id, f.read())
    except OSError:
        return None


def read_waiting(runs_dir: str) -> list[Waiting]:
    """Every readable entry, unordered; unreadable ones are skipped (a pass repairs them)."""
    found = []
    for run_id in _ids(waiting_dir(runs_dir)):
        entry = read_waiting_entry(runs_dir, run_id)
        if entry is not None:
            found.append(entry)
    return found


def waiting_to_plan(runs_dir: str, pool: PoolState) -> list[Waiting]:
    """The entries a plan considers: less the runs asked to cancel (the cancel sweep ends
    them) and those whose keeper holds a slot or GPU (it drops their entry soon)."""
    gone = set(requested_ids(runs_dir)) | pool.holding()
    return [w for w in read_waiting(runs_dir) if w.run_id not in gone]


def set_priority(runs_dir: str, run_id: str, priority: int) -> bool:
    """Change a waiting run's priority (in `queue/submitted` first, which reconcile
    re-indexes a run from, then in its entry); False if it is not waiting."""
    entry = read_waiting_entry(runs_dir, run_id)
    if entry is None:
        return False
    priority = check_priority(priority)
    try:
        set_submitted_priority(resolve_run_id(runs_dir, run_id), priority)
    except RunLookupError:
        return False
    add_waiting(runs_dir, Waiting(**{**asdict(entry), "priority": priority}))
    return True


def remove_waiting(runs_dir: str, run_id: str) -> None:
    """Drop the run's entry and placement, if any."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(waiting_entry(runs_dir, run_id))
    remove_placement(runs_dir, run_id)


def write_placement(runs_dir: str, placement: Placement) -> None:
    data = {"host": placement.host, "node": placement.node, "gpus": list(placement.gpus),
            "at": placement.at}
    write_text(placed_entry(runs_dir, placement.run_id), json.dumps(data), readonly=False)


def remove_placement(runs_dir: str, run_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(placed_entry(runs_dir, run_id))


def read_placements(runs_dir: str) -> list[Placement]:
    """Every readable placement."""
    found = []
    for run_id in _ids(placed_dir(runs_dir)):
        try:
            with open(placed_entry(runs_dir, run_id), "rb") as f:
                raw = json.loads(f.read())
            found.append(Placement(run_id, str(raw["host"]), str(raw["node"]),
                                   tuple(str(g) for g in raw["gpus"]), int(raw["at"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def waiting_from(run_id: str, submitted: dict[str, Any]) -> Waiting:
    """The waiting entry of a run from its `queue/submitted` (as `queue_meta` writes it)."""
    request = request_from(submitted)
    time = submitted.get("time")
    return Waiting(
        run_id=run_id,
        queue=str(submitted.get("queue") or ""),
        submitted=time if isinstance(time, int) else make_run_timestamp(),
        gpus=request.gpus,
        priority=request.priority,
        time_limit=time_limit_of(submitted),
        after=request.after,
        after_any=request.after_any,
        any_end=request.any_end,
    )


class Gone(str):
    """`lock_waiting`: why the run is not the queue's to act on (deleted, or no usable lock
    file); its waiting entry was dropped."""


def lock_waiting(runs_dir: str, run_id: str) -> RunLock | Gone | None:
    """The lock of a run in the waiting index; None if held by others; `Gone` (the entry
    dropped) if the run was deleted or is not the queue's."""
    try:
        return try_lock(resolve_run_id(runs_dir, run_id))
    except (RunLookupError, LockFileMissing) as e:
        remove_waiting(runs_dir, run_id)
        return Gone(e)


def commit_placement(lock: RunLock, record: RunRecord, host: str, node: str,
                     gpus: tuple[str, ...]) -> Placement:
    """Place a queued run held under `lock`: its `placed/` entry, then its record (event
    `place`). The entry comes first, so a pass never counts the GPUs as free meanwhile."""
    placement = Placement(lock.run.id, host, node, gpus, make_run_timestamp())
    write_placement(lock.run.runs_dir, placement)
    lock.advance(record, Event.PLACE, RunState.QUEUED, placed_node=node,
                 placed_gpus=list(gpus), placed_at=placement.at)
    return placement


def _ids(folder: str) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if is_run_id(name)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _decode_waiting(run_id: str, data: bytes) -> Waiting | None:
    try:
        raw = json.loads(data)
        request = request_from(raw)
        return Waiting(
            run_id=run_id,
            queue=str(raw["queue"]),
            submitted=int(raw["submitted"]),
            gpus=check_gpus(raw.get("gpus")),
            priority=check_priority(raw.get("priority", 0)),
            time_limit=time_limit_of(raw),
            after=request.after,
            after_any=request.after_any,
            any_end=request.any_end,
        )
    except (ValueError, KeyError, TypeError, AttributeError, SettingsError):
        return None  # unreadable: skipped, never fatal to a pass
