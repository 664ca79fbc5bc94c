"""One reconciler at a time: the reconcile lease, and knowing the first worker.

The lease is an OFD lock on `<runs>/.gage-queue/reconcile.lock`, taken
without blocking and held for one pass. Its content, written and read
through the locked descriptor (so NFS clients revalidate it, as with the
run record), says when the last pass and the last full scan were done
and by whom. A worker takes the lease every interval but only does a
pass if none was done within that interval, so with any number of
workers one pass per interval is done in all. The lease expires by
itself: the file system drops the lock when its holder dies (its host's
NFS locks are reclaimed after the host is gone), and a pass done by a
dead holder simply counts as not done.

Every worker also holds a shared lock on `<runs>/.gage-queue/workers.lock`
for its life: one that finds no other holder at start is the first
worker, and does the full scan.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from gage_queue.layout import reconcile_lease, workers_lock
from gage_queue.locks import lock_fd, open_lock_file, probe_fd

STAMP_LIMIT = 4096


@dataclass(frozen=True)
class Stamp:
    """When the last pass and the last full scan were done (epoch s), by whom."""

    last_pass: float = 0.0
    last_full: float = 0.0
    by: str = ""


class ReconcileLease:
    """A held reconcile lease: read and write the stamp through it, then release."""

    def __init__(self, fd: int):
        self.fd = fd

    def stamp(self) -> Stamp:
        try:
            data = json.loads(os.pread(self.fd, STAMP_LIMIT, 0) or b"{}")
            return Stamp(float(data.get("pass", 0)), float(data.get("full", 0)),
                         str(data.get("by", "")))
        except (ValueError, TypeError, AttributeError):
            return Stamp()

    def record(self, *, full: bool, now: float | None = None) -> None:
        """Record a pass (and a full scan if `full`) done now."""
        now = time.time() if now is None else now
        last_full = now if full else self.stamp().last_full
        by = f"{socket.gethostname()} pid {os.getpid()}"
        data = json.dumps({"pass": now, "full": last_full, "by": by}).encode()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ReconcileLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_lease(runs_dir: str) -> ReconcileLease | None:
    """The reconcile lease if nobody holds it, else None (never blocks)."""
    fd = open_lock_file(reconcile_lease(runs_dir), create=True)
    try:
        if lock_fd(fd):
            return ReconcileLease(fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def hold_workers_lock(runs_dir: str) -> tuple[int, bool]:
    """Share the workers lock for this process's life; (its fd, whether we are first).

    First means no other live worker, on any host, holds it.
    """
    fd = open_lock_file(workers_lock(runs_dir), create=True)
    first = not probe_fd(fd)
    lock_fd(fd, shared=True)
    return fd, first
