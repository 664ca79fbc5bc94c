"""Starting a Celery worker for gage-queue runs."""

from __future__ import annotations

import logging
import socket
import sys
import time
import warnings
from dataclasses import dataclass, replace

from celery.exceptions import CPendingDeprecationWarning
from celery.signals import after_setup_logger, after_setup_task_logger
from celery.utils.nodenames import host_format

from gage_queue.broker.config import prepare_broker
from gage_queue.errors import SettingsError
from gage_queue.pool import hold_node_name, try_node_name
from gage_queue.settings import Settings, check_queue_name
from gage_queue.text import has_control, shown
from gage_runs.runs_dir import check_runs_dir
from gage_worker.celery_app import app_for

DEFAULT_CONCURRENCY = 1
DEFAULT_NODE_NAME = "gage@%h"
MAX_DEFAULT_NODES = 64


def claim_node_name(runs_dir: str, host: str) -> tuple[str, int]:
    """The first default node name no live worker of this host uses, and its lock.

    `gage@HOST`, then `gage2@HOST`, ...: each held by an exclusive lock
    while its worker lives (`layout.node_lock`). Two workers of a host get
    two names; a worker restarted after its predecessor died gets that
    name back, and with it its slot locks (`hosts/HOST/NODE/slot-N.lock`),
    so runs its predecessor left running still count against its slots.
    """
    for n in range(1, MAX_DEFAULT_NODES + 1):
        name = f"gage{n if n > 1 else ''}@{host}"
        fd = try_node_name(runs_dir, host, name)
        if fd is not None:
            return name, fd
    raise SettingsError(f"{MAX_DEFAULT_NODES} workers run on {host} already: name this one (-n)")


@dataclass(frozen=True)
class WorkerOptions:
    """What `gage-worker worker` takes besides the settings."""

    queues: tuple[str, ...] = ()
    concurrency: int | None = None
    loglevel: str = "info"
    hostname: str | None = None  # None: the first free default name (`claim_node_name`)
    finalize: bool | None = None  # consume the finalize queue; None: unless it has GPUs
    events: bool = False  # send task events (Flower, `celery events`)


def worker_argv(settings: Settings, options: WorkerOptions) -> list[str]:
    """Celery worker arguments; SettingsError for inconsistent options.

    A worker without GPUs consumes the finalize queue too, so a run is
    finalized without another worker; a worker with GPUs does not, unless
    told to (`--finalize`), so its GPUs do not wait while checkpoints are
    hashed: run a CPU worker on the finalize queue (`gage-worker -Q
    gage-finalize`) next to GPU workers. Naming the finalize queue in the
    queues also consumes it.
    Concurrency defaults to one run at a time (ML runs tend to use the
    whole machine); with GPU slots it is one per GPU.
    """
    queues = [check_queue_name(q) for q in options.queues] or [settings.queue]
    if consumes_finalize(settings, options) and settings.finalize_queue not in queues:
        queues.append(settings.finalize_queue)
    concurrency = options.concurrency
    if settings.gpus:
        if concurrency not in (None, len(settings.gpus)):
            raise SettingsError(
                f"--concurrency {concurrency} conflicts with --gpus "
                f"{','.join(settings.gpus)}: a worker runs one run per GPU"
            )
        concurrency = len(settings.gpus)
    concurrency = concurrency or DEFAULT_CONCURRENCY
    if concurrency < 1:
        raise SettingsError(f"concurrency must be at least 1, not {concurrency}")
    return [
        "worker",
        "--pool=prefork",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency}",
        f"--loglevel={options.loglevel}",
        f"--hostname={options.hostname or DEFAULT_NODE_NAME}",
        # Both sync what this queue never uses (revoked task ids, other workers' events):
        # mingle made every start wait a second for replies from the other workers.
        "--without-mingle",
        "--without-gossip",
        *(["--task-events"] if options.events else []),
    ]


def consumes_finalize(settings: Settings, options: WorkerOptions) -> bool:
    """Whether the worker takes finalize tasks: see `worker_argv`."""
    if settings.finalize_queue in options.queues:
        return True
    return options.finalize if options.finalize is not None else not settings.gpus


def finalize_warning(settings: Settings, options: WorkerOptions) -> str | None:
    """The line a worker that takes no finalize tasks says at start, else None."""
    if consumes_finalize(settings, options):
        return None
    why = " (it has GPUs)" if settings.gpus and options.finalize is None else ""
    return (
        f"this worker does not consume the finalize queue {settings.finalize_queue}{why}:"
        f" the runs it executes are finalized by a worker that does"
        f" (`gage-worker -Q {settings.finalize_queue}` on a CPU host, or --finalize)"
    )


class SafeLogText(logging.Filter):
    """Escapes control characters in every log message (`gage_queue.text.shown`).

    Labels, cancel requesters, schedule job names and run messages reach
    the worker's log lines: a run must not be able to write an escape
    sequence to the terminal that tails them, nor forge a line with a
    newline. Tracebacks (`exc_info`) are formatted apart and kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if has_control(message):
            record.msg, record.args = shown(message, limit=None), None
        return True


def _filter_log_handlers(logger: logging.Logger, **_: object) -> None:
    for handler in logger.handlers:
        if not any(isinstance(f, SafeLogText) for f in handler.filters):
            handler.addFilter(SafeLogText())


def run_worker(settings: Settings, options: WorkerOptions) -> None:
    """Check the runs dir and run a worker until it is stopped."""
    runs_dir = check_runs_dir(settings.require_runs_dir(), writable=True)
    settings = settings.with_overrides(runs_dir=runs_dir)
    argv = worker_argv(settings, options)  # checked before anything is claimed
    warning = finalize_warning(settings, options)
    if warning:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"[{stamp}: WARNING] gage-worker: {warning}", file=sys.stderr, flush=True)
    # Celery warns on every reconnect unless the setting is True; it is set
    # (to False, on purpose) in celery_app.celery_config.
    warnings.filterwarnings(
        "ignore", message=r"\s*In Celery 5.1 we introduced", category=CPendingDeprecationWarning
    )
    prepare_broker(settings)
    after_setup_logger.connect(_filter_log_handlers, weak=False)
    after_setup_task_logger.connect(_filter_log_handlers, weak=False)
    app = app_for(settings)
    # Keepers hold one of the node's slot locks per run (and a lock per GPU
    # it was placed on), so a restarted worker never oversubscribes.
    app.slots = _concurrency(argv)
    app.finalizes = consumes_finalize(settings, options)
    host = socket.gethostname()
    if options.hostname is None:
        name, app.node_fd = claim_node_name(runs_dir, host)
    else:
        name = host_format(options.hostname, hostname=host)
        app.node_fd = hold_node_name(runs_dir, host, name)
    # The node's own queue is added by its bootstep (`node.NodeStep`).
    app.worker_main(worker_argv(settings, replace(options, hostname=name)))


def _concurrency(argv: list[str]) -> int:
    return next(int(arg.partition("=")[2]) for arg in argv if arg.startswith("--concurrency="))
