"""This worker as a node of the pool: what it offers, its placement passes, its drain.

A worker bootstep (`NodeStep`) that, once the pool has started:

- writes what the node offers (`pool.NodeInfo`: run queues, slots, GPUs)
  next to its node lock, and clears a drain request left from before;
- runs placement passes in a thread of the main process
  (`scheduler.schedule`): at once when a submit's message woke it
  (`consumer_guard`), else about once a second (`schedule_if_due`);
- drains on request (`gage-worker drain`): the scheduler places nothing
  more here, the runs placed here finish, then the worker stops itself
  with a warm shutdown (exit 0). A worker that cannot start runs (its
  disk, say) asks for its own drain, so no run is placed here again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import replace

from celery import bootsteps
from celery.worker import WorkController

from gage_queue.layout import drain_marker, node_queue
from gage_queue.pool import (
    NodeInfo,
    clear_drain,
    hold_node_name,
    slot_holders,
    write_node_info,
)
from gage_queue.settings import Settings
from gage_queue.waiting import read_placements
from gage_runs.meta import make_run_timestamp
from gage_worker.scheduler import SCHEDULE_INTERVAL, schedule, schedule_if_due

log = logging.getLogger(__name__)


def node_info_of(worker: WorkController) -> NodeInfo:
    """What this worker offers: its run queues (not its own queue), slots and GPUs."""
    app = worker.app
    queues = app.amqp.queues
    names = sorted(q for q in (queues.consume_from or queues) if q != app.node_queue)
    return NodeInfo(node=worker.hostname, host=socket.gethostname(), queues=tuple(names),
                    slots=app.slots or 1, gpus=app.settings.gpus, pid=os.getpid(),
                    started=make_run_timestamp())


def is_drained(runs_dir: str, info: NodeInfo) -> bool:
    """No run holds a slot of the node and none is placed on it."""
    if any(slot_holders(runs_dir, info)):
        return False
    return not any(p.node == info.node for p in read_placements(runs_dir))


class NodeStep(bootsteps.StartStopStep):
    """The worker's node: its offer, the placement thread, drain."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: WorkController, **kwargs: object):
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._draining = False
        app = worker.app
        app.node_name = worker.hostname
        app.node_queue = node_queue(worker.hostname)
        app.amqp.queues.select_add(app.node_queue)
        if app.wakeup is None:
            app.wakeup = threading.Event()

    def start(self, worker: WorkController) -> None:
        settings: Settings = worker.app.settings
        runs_dir = settings.require_runs_dir()
        info = node_info_of(worker)
        if worker.app.node_fd is None:  # started by `celery worker`, not `gage-worker`
            worker.app.node_fd = hold_node_name(runs_dir, info.host, info.node)
        clear_drain(runs_dir, info.host, info.node)
        write_node_info(runs_dir, info)
        threading.Thread(target=self._loop, args=(worker, settings, info),
                         name="gage-scheduler", daemon=True).start()

    def stop(self, worker: WorkController) -> None:
        self._stop.set()
        wakeup = worker.app.wakeup
        if wakeup is not None:
            wakeup.set()

    def _loop(self, worker: WorkController, settings: Settings, info: NodeInfo) -> None:
        wakeup = worker.app.wakeup
        while not self._stop.is_set():
            woken = wakeup.wait(SCHEDULE_INTERVAL)
            wakeup.clear()
            if self._stop.is_set():
                return
            try:
                info = self._refresh(worker, settings, info)
                done = schedule(settings) if woken else schedule_if_due(settings)
                if done is not None and done.dropped:
                    log.info("placement: %d stale placement(s) given back", done.dropped)
                self._check_drain(settings.require_runs_dir(), info)
            except Exception:
                log.exception("placement pass failed")

    def _refresh(self, worker: WorkController, settings: Settings, info: NodeInfo) -> NodeInfo:
        """The node's offer again if its queues changed (`celery control add_consumer`)."""
        now = node_info_of(worker)
        if now.queues == info.queues:
            return info
        info = replace(info, queues=now.queues)
        write_node_info(settings.require_runs_dir(), info)
        return info

    def _check_drain(self, runs_dir: str, info: NodeInfo) -> None:
        if not os.path.exists(drain_marker(runs_dir, info.host, info.node)):
            return
        if not self._draining:
            self._draining = True
            log.info("draining: no new run is placed on %s; it stops when its runs end",
                     info.node)
        if is_drained(runs_dir, info):
            log.info("drained: no run left on %s; stopping", info.node)
            self._stop.set()
            os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown: exit 0
