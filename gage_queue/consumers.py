"""Which queues have a consumer, told through the runs dir (Celery-free).

Every worker holds a shared lock on `.gage-queue/queues/<queue>.lock` for
each queue it consumes, for as long as its main process lives. Whoever
shares the runs dir can then ask, without the broker and without Celery,
whether anything consumes a queue: `gage-submit --follow` and `wait` say
so when a run waits on a queue nobody consumes.
"""

from __future__ import annotations

from collections.abc import Iterable

from gage_queue.errors import SettingsError
from gage_queue.layout import consumer_lock, workers_lock
from gage_queue.locks import lock_fd, open_lock_file, probe_path
from gage_queue.settings import check_queue_name


def announce_queues(runs_dir: str, queues: Iterable[str]) -> list[int]:
    """Hold a shared lock per queue; the descriptors (closing them withdraws)."""
    fds = []
    for queue in queues:
        fd = open_lock_file(consumer_lock(runs_dir, queue), create=True)
        lock_fd(fd, shared=True)
        fds.append(fd)
    return fds


def runs_dir_has_worker(runs_dir: str) -> bool:
    """True if some worker shares this runs dir (every worker holds the workers lock)."""
    return probe_path(workers_lock(runs_dir))


def queue_has_consumer(runs_dir: str, queue: str) -> bool:
    """True if some worker sharing this runs dir consumes `queue`.

    A name no worker may consume (`settings.check_queue_name`: read from a
    run's files, it can be anything, a path or a NUL) has no consumer and
    names no file.
    """
    try:
        check_queue_name(queue)
    except SettingsError:
        return False
    return probe_path(consumer_lock(runs_dir, queue))
