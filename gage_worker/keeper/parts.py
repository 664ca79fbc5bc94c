"""The keeper's parts: each adds one behaviour through a few hooks.

A part may implement any of:

    acquire(keeper)           before the command starts; may raise NotPlacedHere
    env(keeper, env)          add to the run's environment
    fds(keeper) -> [fd]       descriptors the run inherits (its locks)
    tick(keeper, now) -> Stop about twice a second while the run lives
    release(keeper)           after every process of the run has exited

The keeper calls them in order; see `keeper.Keeper`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gage_queue.attempts import preempted
from gage_queue.layout import gpu_lock, slot_lock
from gage_queue.locks import hold_host_alive, lock_fd, open_lock_file
from gage_queue.pool import Holder, write_holder
from gage_queue.queue_meta import read_cancel
from gage_queue.requests import EarlySignal, time_limit_of
from gage_queue.states import EndReason, cancelled_words
from gage_runs.errors import RunLookupError
from gage_runs.meta import make_run_timestamp
from gage_runs.names import is_run_id, run_name_for_id
from gage_runs.runs_dir import resolve_run_id
from gage_worker.keeper.integrity import check_run_files

if TYPE_CHECKING:
    from gage_worker.keeper.keeper import Keeper

@dataclass(frozen=True)
class Stop:
    """Why the keeper stops the run: a reason, in words too."""

    reason: EndReason | None  # None: the run was deleted, nothing to record
    detail: str


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


class NotPlacedHere(Exception):
    """The run is not this node's to start now: placed elsewhere, or its GPUs are taken."""


class SlotPart(Part):
    """A slot of this node and exactly the GPUs the scheduler placed the run on.

    The record (read under the run lock) names the node and GPUs
    (`gage_worker.scheduler`). Each is a lock file taken without waiting;
    the run inherits them, so they stay taken while any process of the
    run lives, whatever happens to its worker. If the record names another
    node, or a lock is taken after all, `NotPlacedHere`: the keeper gives
    the placement back and the next pass places the run again. The keeper
    writes its run into each lock file it holds (`pool.Holder`), for
    `gage-submit pool` and the scheduler's reservations.
    """

    def __init__(self) -> None:
        self._held: list[int] = []
        self.slot: str | None = None
        self.gpus: tuple[str, ...] = ()

    def acquire(self, keeper: Keeper) -> None:
        record, job = keeper.queued, keeper.job
        if record.placed_node != job.node:
            where = f"placed on {record.placed_node}" if record.placed_node else "not placed yet"
            raise NotPlacedHere(f"{where}, not on {job.node}")
        gpus = tuple(record.placed_gpus or ())
        unknown = [gpu for gpu in gpus if gpu not in job.gpus]
        if unknown:
            raise NotPlacedHere(f"placed on GPUs {','.join(unknown)} this worker does not have")
        runs_dir, host = job.runs_dir, keeper.me.hostname
        holder = Holder(keeper.run.id, make_run_timestamp(), keeper.ends_by(),
                        keeper.request.priority, keeper.request.preemptible,
                        preempted(keeper.submitted))
        slot = self._take_slot(keeper, holder)
        if slot is None:
            raise NotPlacedHere(f"every slot of {job.node} is taken")
        self.slot = f"slot {slot}"
        for gpu in gpus:
            if not self._take(gpu_lock(runs_dir, host, gpu), holder):
                raise NotPlacedHere(f"GPU {gpu} is held by another run")
        self.gpus = gpus
        if gpus:
            self.slot += f", GPU{'s' if len(gpus) > 1 else ''} {','.join(gpus)}"

    def _take_slot(self, keeper: Keeper, holder: Holder) -> int | None:
        node = keeper.job.node or "worker"
        for n in range(keeper.job.slots or 1):
            if self._take(slot_lock(keeper.job.runs_dir, keeper.me.hostname, node, n), holder):
                return n
        return None

    def _take(self, path: str, holder: Holder) -> bool:
        fd = open_lock_file(path, create=True)
        if not lock_fd(fd):
            os.close(fd)
            return False
        self._held.append(fd)
        with contextlib.suppress(OSError):
            write_holder(fd, holder)
        return True

    def env(self, keeper: Keeper, env: dict[str, str]) -> None:
        if keeper.job.gpus:  # a run given no GPU on a GPU worker sees none
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)

    def fds(self, keeper: Keeper) -> list[int]:
        return list(self._held)

    def release(self, keeper: Keeper) -> None:
        for fd in self._held:
            os.close(fd)
        self._held = []


def cancel_stop(keeper: Keeper) -> Stop | None:
    request = read_cancel(keeper.run)
    if request is None:
        return None
    if is_run_id(request.get("preempted_by")):
        return Stop(EndReason.PREEMPTED,
                    f"preempted by {run_name_for_id(request['preempted_by'])}")
    by = request.get("by")
    return Stop(EndReason.CANCELLED, cancelled_words(by))


class CancelPart(Part):
    """A cancel request (`queue/cancel`, written by any host) stops the run."""

    def tick(self, keeper: Keeper, now: float) -> Stop | None:
        return cancel_stop(keeper)


class TimeLimitPart(Part):
    """The submitted time limit stops the run; `--signal SIG@SECONDS` warns it first.

    The warning is sent once: before the time limit, or before a preemption's SIGTERM
    (`take_warning`, by the keeper's stop), whichever comes first.
    """

    def __init__(self) -> None:
        self.limit: float | None = None
        self.warning: EarlySignal | None = None

    def acquire(self, keeper: Keeper) -> None:
        self.limit = time_limit_of(keeper.submitted)
        if self.limit is not None:
            self.warning = keeper.request.warning

    def take_warning(self) -> EarlySignal | None:
        """The warning not sent yet, if any; it is not sent by this part from then on."""
        warning, self.warning = self.warning, None
        return warning

    def tick(self, keeper: Keeper, now: float) -> Stop | None:
        if self.limit is None:
            return None
        ran = now - keeper.started_at
        if ran > self.limit:
            return Stop(EndReason.TIME_LIMIT, f"time limit of {self.limit:g} s reached")
        if self.warning is not None and ran >= self.limit - self.warning.before:
            keeper.warn(getattr(signal, self.warning.signal),
                        f"{self.warning.before:g} s before its time limit")
            self.warning = None
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


class ResumePart(Part):
    """A retry's run gets `GAGE_RESUME_RUN_DIR`: the previous attempt's run dir."""

    def env(self, keeper: Keeper, env: dict[str, str]) -> None:
        previous = keeper.submitted.get("retry_of")
        if not is_run_id(previous):
            return
        with contextlib.suppress(RunLookupError):  # deleted: nothing to resume from
            env["GAGE_RESUME_RUN_DIR"] = resolve_run_id(keeper.job.runs_dir, previous).run_dir


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

