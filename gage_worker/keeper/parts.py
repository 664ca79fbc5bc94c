"""The keeper's parts: each adds one behaviour through a few hooks.

A part may implement any of:

    acquire(keeper)           before the command starts; may wait, or raise StoppedBeforeStart
    env(keeper, env)          add to the run's environment
    fds(keeper) -> [fd]       descriptors the run inherits (its locks)
    tick(keeper, now) -> Stop about twice a second while the run lives
    release(keeper)           after every process of the run has exited

The keeper calls them in order; see `keeper.Keeper`.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gage_queue.layout import gpu_lock, slot_lock
from gage_queue.locks import hold_host_alive, lock_fd, open_lock_file
from gage_queue.queue_meta import read_cancel, read_submitted
from gage_queue.states import EndReason, cancelled_words
from gage_worker.keeper.integrity import check_run_files

if TYPE_CHECKING:
    from gage_worker.keeper.keeper import Keeper

SLOT_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class Stop:
    """Why the keeper stops the run: a reason, in words too."""

    reason: EndReason | None  # None: the run was deleted, nothing to record
    detail: str


class StoppedBeforeStart(Exception):
    """The run must not start after all (cancelled while waiting for a slot)."""

    def __init__(self, stop: Stop):
        super().__init__(stop.detail)
        self.stop = stop


class Part:
    def acquire(self, keeper: Keeper) -> None: ...

    def env(self, keeper: Keeper, env: dict[str, str]) -> None: ...

    def fds(self, keeper: Keeper) -> list[int]:
        return []

    def tick(self, keeper: Keeper, now: float) -> Stop | None:
        return None

    def release(self, keeper: Keeper) -> None: ...


class HostPart(Part):
    """Hold this host's alive lock (shared), so others can tell host from worker loss."""

    def __init__(self) -> None:
        self.fd = -1

    def acquire(self, keeper: Keeper) -> None:
        self.fd = hold_host_alive(keeper.job.runs_dir, keeper.me.hostname)

    def release(self, keeper: Keeper) -> None:
        if self.fd >= 0:
            os.close(self.fd)


class SlotPart(Part):
    """A run slot (a GPU, or one of the node's N slots): a per-host lock.

    The run inherits the slot's lock, so a slot stays taken while any
    process of the run lives, whatever happens to its worker; a restarted
    worker's keeper waits for a free one instead of oversubscribing.
    """

    def __init__(self) -> None:
        self.fd = -1
        self.slot: str | None = None
        self.gpu: str | None = None

    def _candidates(self, keeper: Keeper) -> list[tuple[str, str, str | None]]:
        runs_dir, host = keeper.job.runs_dir, keeper.me.hostname
        if keeper.job.gpus:
            return [(gpu_lock(runs_dir, host, gpu), f"gpu {gpu}", gpu) for gpu in keeper.job.gpus]
        if keeper.job.slots:
            node = (keeper.job.node or "worker").replace("/", "_")
            return [(slot_lock(runs_dir, host, node, n), f"slot {n}", None)
                    for n in range(keeper.job.slots)]
        return []

    def acquire(self, keeper: Keeper) -> None:
        candidates = self._candidates(keeper)
        if not candidates:
            return
        said = False
        while True:
            for path, slot, gpu in candidates:
                fd = open_lock_file(path, create=True)
                if lock_fd(fd):
                    self.fd, self.slot, self.gpu = fd, slot, gpu
                    return
                os.close(fd)
            stop = keeper.stop_before_start()
            if stop:
                raise StoppedBeforeStart(stop)
            if not said:
                keeper.log("every slot of this node is held by a running run; waiting")
                said = True
            time.sleep(SLOT_WAIT_SECONDS)

    def env(self, keeper: Keeper, env: dict[str, str]) -> None:
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu

    def fds(self, keeper: Keeper) -> list[int]:
        return [self.fd] if self.fd >= 0 else []

    def release(self, keeper: Keeper) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def cancel_stop(keeper: Keeper) -> Stop | None:
    request = read_cancel(keeper.run)
    if request is None:
        return None
    by = request.get("by")
    return Stop(EndReason.CANCELLED, cancelled_words(by))


class CancelPart(Part):
    """A cancel request (`queue/cancel`, written by any host) stops the run."""

    def tick(self, keeper: Keeper, now: float) -> Stop | None:
        return cancel_stop(keeper)


class TimeLimitPart(Part):
    """The submitted time limit stops the run."""

    def __init__(self) -> None:
        self.limit: float | None = None

    def acquire(self, keeper: Keeper) -> None:
        limit = (read_submitted(keeper.run) or {}).get("time_limit")
        if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0:
            self.limit = float(limit)

    def tick(self, keeper: Keeper, now: float) -> Stop | None:
        if self.limit is not None and now - keeper.started_at > self.limit:
            return Stop(EndReason.TIME_LIMIT, f"time limit of {self.limit:g} s reached")
        return None


def deleted_stop(keeper: Keeper) -> Stop | None:
    """A Stop with no reason if the run's meta dir is gone (`gage delete`): nothing to record in."""
    return None if os.path.isdir(keeper.run.meta_dir) else Stop(None, "its meta dir was deleted")


class RunFilesPart(Part):
    """The run's own files: a deleted meta dir stops the run; a deleted lock file is restored."""

    def tick(self, keeper: Keeper, now: float) -> Stop | None:
        if stop := deleted_stop(keeper):
            return stop
        if not keeper.lock.linked():
            keeper.log("the run's lock file was deleted or replaced; restoring it")
            keeper.lock.relink()
        return None


class SubmittedFilesPart(Part):
    """Only the submitter can change a submitted run: the keeper refuses one changed by others.

    Last to acquire, so the check is as close to the start as it can be
    (after any wait for a slot). A `TamperedRunError` (a GageRunsError)
    ends the run `error`, reason `cannot-start`, without running it; see
    `integrity` for what is checked and why.
    """

    def acquire(self, keeper: Keeper) -> None:
        check_run_files(keeper.run, keeper.job.runs_dir)


class ShutdownPart(Part):
    """SIGTERM to the keeper (its host or service is stopping) stops the run."""

    def __init__(self) -> None:
        self.signalled = False

    def acquire(self, keeper: Keeper) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_term(self, *_: object) -> None:
        self.signalled = True

    def tick(self, keeper: Keeper, now: float) -> Stop | None:
        if self.signalled:
            return Stop(EndReason.SHUTDOWN, "its keeper was told to stop (SIGTERM)")
        return None

