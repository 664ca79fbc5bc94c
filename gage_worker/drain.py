"""`gage-worker drain`: ask live worker nodes to drain, and wait for them to stop.

The request is a marker file next to the node's lock
(`layout.drain_marker`); the node itself acts on it (`node.NodeStep`):
the scheduler places nothing more there, its runs finish, and it exits 0.
"""

from __future__ import annotations

import socket
import time

from gage_queue.errors import SettingsError, TimedOut
from gage_queue.layout import node_lock
from gage_queue.locks import probe_path
from gage_queue.pool import NodeInfo, live_nodes, request_drain, slot_holders
from gage_queue.text import shown


def drain(runs_dir: str, names: tuple[str, ...]) -> list[tuple[NodeInfo, int]]:
    """Ask the named live nodes (default: this host's) to drain; each with its running runs."""
    nodes = live_nodes(runs_dir)
    if names:
        by_name = {info.node: info for info in nodes}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise SettingsError(f"no live worker named {shown(unknown[0], 100)} in this runs dir"
                                " (`gage-submit pool` lists them)")
        chosen = [by_name[name] for name in names]
    else:
        host = socket.gethostname()
        chosen = [info for info in nodes if info.host == host]
        if not chosen:
            raise SettingsError(f"no live worker on {host} in this runs dir")
    asked = []
    for info in chosen:
        request_drain(runs_dir, info.host, info.node)
        running = sum(holder is not None for holder in slot_holders(runs_dir, info))
        asked.append((info, running))
    return asked


def wait_drained(runs_dir: str, nodes: list[NodeInfo], timeout: float) -> None:
    """Return once every node's worker has stopped; TimedOut after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [info.node for info in nodes if probe_path(node_lock(runs_dir, info.host,
                                                                       info.node))]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise TimedOut(f"still draining after {timeout:g} s: {', '.join(alive)}")
        time.sleep(0.2)
