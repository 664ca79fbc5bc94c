"""Where the queue keeps its files: every `.gage-queue` path of a runs dir
and every `<id>.meta/queue` path of a run, in one place.

Gage lists neither: `.gage-queue` is not a run id, and `queue/` is a
meta dir folder Gage ignores (run-format.md).

    <runs>/.gage-queue/
        active/<id>                  the active index (`active`)
        broker/                      the embedded broker (`broker.embedded`)
        cancel/<id>                  cancel requests not yet acted on
        hosts/<host>/alive.lock      shared by every worker and keeper of the host
        hosts/<host>/gpu-<id>.lock   a GPU, held by the keeper of the run using it
        hosts/<host>/<node>/slot-<n>.lock   a run slot of a node without GPUs
        hosts/<host>/nodes/<node>.lock      a worker's node name, while it lives
        hosts/<host>/nodes/<node>.json      what the node offers: queues, slots, GPUs
        hosts/<host>/nodes/<node>.drain     asks the node to drain (`gage-worker drain`)
        waiting/<id>                 a queued run not yet started: queue, priority, GPUs
        placed/<id>                  where the scheduler placed it, until its keeper starts it
        scheduler.lock               one placement pass at a time
        queues/<queue>.lock          shared by every worker consuming the queue
        reconcile.lock               the reconcile lease and its times
        workers.lock                 shared by every worker: tells the first one
        beat-<key>.lock              one beat per schedule file

    <id>.meta/queue/
        submitted   enqueued   cancel   lock   rerun-of
"""

from __future__ import annotations

import os

from gage_runs.fsmode import QUEUE_DIR as QUEUE_HOME
from gage_runs.meta import run_meta_path
from gage_runs.types import Run

RUN_QUEUE_DIR = "queue"

SUBMITTED = "submitted"
ENQUEUED = "enqueued"
CANCEL = "cancel"
LOCK = "lock"
RERUN_OF = "rerun-of"
DEPENDS = "depends.json"  # the submitter's, read-only: not shared-writable as the others


def active_dir(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "active")


def broker_dir(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "broker")


def cancel_requests_dir(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "cancel")


def cancel_marker(runs_dir: str, run_id: str) -> str:
    return os.path.join(cancel_requests_dir(runs_dir), run_id)


def hosts_dir(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "hosts")


def host_dir(runs_dir: str, host: str) -> str:
    return os.path.join(hosts_dir(runs_dir), host)


def host_alive_lock(runs_dir: str, host: str) -> str:
    return os.path.join(host_dir(runs_dir, host), "alive.lock")


def gpu_lock(runs_dir: str, host: str, gpu: str) -> str:
    return os.path.join(host_dir(runs_dir, host), f"gpu-{gpu}.lock")


def slot_lock(runs_dir: str, host: str, node: str, slot: int) -> str:
    return os.path.join(host_dir(runs_dir, host), _file_name(node), f"slot-{slot}.lock")


def node_locks_dir(runs_dir: str, host: str) -> str:
    return os.path.join(host_dir(runs_dir, host), "nodes")


def node_lock(runs_dir: str, host: str, node: str) -> str:
    """Held by the worker named `node` on `host` while it lives."""
    return os.path.join(node_locks_dir(runs_dir, host), f"{_file_name(node)}.lock")


def node_info(runs_dir: str, host: str, node: str) -> str:
    """What the worker named `node` offers (`pool.NodeInfo`), written at its start."""
    return os.path.join(node_locks_dir(runs_dir, host), f"{_file_name(node)}.json")


def drain_marker(runs_dir: str, host: str, node: str) -> str:
    """Present while the worker named `node` is asked to drain."""
    return os.path.join(node_locks_dir(runs_dir, host), f"{_file_name(node)}.drain")


def node_queue(node: str) -> str:
    """The broker queue only the worker named `node` consumes: the scheduler's dispatch."""
    return f"gage.node.{node}"


def waiting_dir(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "waiting")


def waiting_entry(runs_dir: str, run_id: str) -> str:
    return os.path.join(waiting_dir(runs_dir), run_id)


def placed_dir(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "placed")


def placed_entry(runs_dir: str, run_id: str) -> str:
    return os.path.join(placed_dir(runs_dir), run_id)


def scheduler_lock(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "scheduler.lock")


def consumers_dir(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "queues")


def consumer_lock(runs_dir: str, queue: str) -> str:
    return os.path.join(consumers_dir(runs_dir), f"{queue}.lock")


def reconcile_lease(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "reconcile.lock")


def workers_lock(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, "workers.lock")


def beat_lock(runs_dir: str, key: str) -> str:
    return os.path.join(runs_dir, QUEUE_HOME, f"beat-{key}.lock")


def _file_name(node: str) -> str:
    """A node name as one path component (Celery allows `/` in it)."""
    return node.replace("/", "_")


def queue_file(run: Run, name: str) -> str:
    """A file of the run's `<id>.meta/queue/`."""
    return run_meta_path(run, RUN_QUEUE_DIR, name)


def queue_file_in(runs_dir: str, run_id: str, name: str) -> str:
    """The same, from a run id, without making a `Run`."""
    return os.path.join(runs_dir, f"{run_id}.meta", RUN_QUEUE_DIR, name)
