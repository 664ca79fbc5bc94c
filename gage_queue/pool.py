"""The pool as the runs dir tells it: live worker nodes, their slots and GPUs, who holds them.

Every worker holds its node lock (`hosts/<host>/nodes/<node>.lock`) while
it lives and writes what it offers next to it (`<node>.json`: queues,
slots, GPUs). A keeper holds one slot lock of its node and one lock per
GPU of its run, and writes its run id and times into each lock file it
holds (`Holder`), so anyone can tell which run holds what without asking
a worker. Nothing here needs the broker: `gage-submit pool` and the
scheduler read the same files.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field

from gage_queue.errors import SettingsError
from gage_queue.layout import (
    drain_marker,
    gpu_lock,
    hosts_dir,
    node_info,
    node_lock,
    node_locks_dir,
    slot_lock,
)
from gage_queue.locks import lock_fd, open_lock_file, probe_path
from gage_runs.fsmode import touch_shared, write_text

HOLDER_LIMIT = 4096


@dataclass(frozen=True)
class NodeInfo:
    """What a worker node offers, written at its start."""

    node: str
    host: str
    queues: tuple[str, ...]
    slots: int
    gpus: tuple[str, ...] = ()
    pid: int | None = None
    started: int | None = None  # epoch µs


@dataclass(frozen=True)
class Holder:
    """The run holding a slot or GPU lock, as its keeper wrote it."""

    run_id: str
    since: int | None = None  # epoch µs
    until: int | None = None  # epoch µs: its time limit ends it by then
    priority: int = 0
    preemptible: bool = False  # `--preemptible`: a higher-priority run may stop it
    preempted: int = 0  # attempts in a row before this one that were preempted


@dataclass
class NodeState:
    """A live node now: its offer, whether it drains, and the holder of each busy slot."""

    info: NodeInfo
    draining: bool = False
    slots: list[Holder | None] = field(default_factory=list)  # None: free

    @property
    def free_slots(self) -> int:
        return sum(holder is None for holder in self.slots)


@dataclass
class PoolState:
    """Live nodes and, per host, each GPU's holder (None: free)."""

    nodes: list[NodeState]
    gpus: dict[str, dict[str, Holder | None]]

    def holding(self) -> set[str]:
        """The runs whose keepers hold a slot or GPU: started, or starting."""
        held = {h.run_id for n in self.nodes for h in n.slots if h is not None}
        return held | {h.run_id for gpus in self.gpus.values() for h in gpus.values()
                       if h is not None}


def slot_holders(runs_dir: str, info: NodeInfo) -> list[Holder | None]:
    """The holder of each slot of the node (None: free)."""
    return [read_holder(slot_lock(runs_dir, info.host, info.node, n)) for n in range(info.slots)]


def write_node_info(runs_dir: str, info: NodeInfo) -> None:
    data = {"node": info.node, "host": info.host, "queues": list(info.queues),
            "slots": info.slots, "gpus": list(info.gpus), "pid": info.pid,
            "started": info.started}
    write_text(node_info(runs_dir, info.host, info.node), json.dumps(data, sort_keys=True),
               readonly=False)


def read_node_info(path: str) -> NodeInfo | None:
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read())
        info = NodeInfo(
            node=str(raw["node"]), host=str(raw["host"]),
            queues=tuple(str(q) for q in raw["queues"]), slots=int(raw["slots"]),
            gpus=tuple(str(g) for g in raw.get("gpus") or ()),
            pid=raw.get("pid") if isinstance(raw.get("pid"), int) else None,
            started=raw.get("started") if isinstance(raw.get("started"), int) else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.slots > 0 else None


def live_nodes(runs_dir: str) -> list[NodeInfo]:
    """Every node whose worker holds its node lock, by host and name."""
    found = []
    try:
        hosts = sorted(os.listdir(hosts_dir(runs_dir)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for host in hosts:
        folder = node_locks_dir(runs_dir, host)
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not name.endswith(".json"):
                continue
            info = read_node_info(os.path.join(folder, name))
            if info is not None and info.host == host \
                    and probe_path(node_lock(runs_dir, host, info.node)):
                found.append(info)
    return found


def try_node_name(runs_dir: str, host: str, name: str) -> int | None:
    """Lock the node name `name` for this worker's life; None if a live worker has it."""
    fd = open_lock_file(node_lock(runs_dir, host, name), create=True)
    if lock_fd(fd):
        return fd
    os.close(fd)
    return None


def hold_node_name(runs_dir: str, host: str, name: str) -> int:
    """`try_node_name`, or SettingsError if a live worker has the name."""
    fd = try_node_name(runs_dir, host, name)
    if fd is None:
        raise SettingsError(f"a worker named {name} already runs on {host}")
    return fd


def is_draining(runs_dir: str, info: NodeInfo) -> bool:
    return os.path.exists(drain_marker(runs_dir, info.host, info.node))


def request_drain(runs_dir: str, host: str, node: str) -> None:
    touch_shared(drain_marker(runs_dir, host, node))


def clear_drain(runs_dir: str, host: str, node: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(drain_marker(runs_dir, host, node))


def write_holder(fd: int, holder: Holder) -> None:
    """Write who holds a lock into the lock file held through `fd`."""
    data = json.dumps({"run": holder.run_id, "since": holder.since, "until": holder.until,
                       "priority": holder.priority, "preemptible": holder.preemptible,
                       "preempted": holder.preempted}).encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def read_holder(path: str) -> Holder | None:
    """The holder of a held lock; None if free. A held lock with no readable holder
    (a keeper between taking the lock and writing it) is held by an unknown run."""
    if not probe_path(path):
        return None
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read(HOLDER_LIMIT))
        return Holder(str(raw["run"]), _int(raw.get("since")), _int(raw.get("until")),
                      _int(raw.get("priority")) or 0, raw.get("preemptible") is True,
                      _int(raw.get("preempted")) or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return Holder("")


def read_pool(runs_dir: str) -> PoolState:
    """The live nodes, their slots' holders, and each host's GPUs' holders.

    A node counts as live only if its lock is still held after its holders
    were read: a host that dies while they are read shows its slots and
    GPUs free, and the pass must not then see a live node with free GPUs
    (it would place runs on a dead host, and others around them).
    """
    nodes = []
    gpus: dict[str, dict[str, Holder | None]] = {}
    for info in live_nodes(runs_dir):
        slots = slot_holders(runs_dir, info)
        host_gpus = gpus.get(info.host, {})
        for gpu in info.gpus:
            if gpu not in host_gpus:
                host_gpus[gpu] = read_holder(gpu_lock(runs_dir, info.host, gpu))
        if not probe_path(node_lock(runs_dir, info.host, info.node)):
            continue  # it died while its holders were read
        gpus[info.host] = host_gpus
        nodes.append(NodeState(info, is_draining(runs_dir, info), slots))
    return PoolState(nodes, gpus)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
