"""`gage-worker beat`: stage and queue a schedule's jobs when they are due.

Each tick stages a run of the job's op into the runs dir and submits it
(`enqueue.submit_run`) with the job's name in `queue/submitted`, so
`gage-submit list --schedule NAME` finds its runs. One log line per tick
says what it did: submitted, skipped (and why), or the error.

- Overlap: unless the job sets `overlap = true`, a tick is skipped while
  the job's last run is queued, running or finalizing. The last run of
  each job is kept in memory and recovered from the runs dir at start-up
  (the newest run whose `queue/submitted` names the job, read newest
  first until found), so the next tick after a restart is also timed
  from it. The check itself reads that one run's state.
- One beat per schedule: a beat holds a POSIX record lock on
  `<runs dir>/.gage-queue/beat-<sha1 of the schedule's real path>.lock`,
  which works across hosts on NFS (give every host the schedule at the
  same path). A second beat waits for it and takes over when the first
  dies, or with `--no-wait` exits with an error.
- A broker that is down at a tick is logged; the run stays queued in the
  runs dir and reconcile sends it. Job names are the runs' mark: keep them
  unique among the schedules that share a runs dir.
- SIGTERM or SIGINT stops the beat after the tick in progress (exit 0).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from gage_queue.broker.config import broker_url
from gage_queue.broker.send import submit_run
from gage_queue.depends import resolve_depends, write_depends
from gage_queue.errors import BrokerUnavailable, CommandFailed
from gage_queue.layout import beat_lock
from gage_queue.queue_meta import read_submitted
from gage_queue.settings import Settings, redact_url
from gage_queue.snapshots import run_state
from gage_queue.states import OWED, RunState
from gage_runs.errors import GageRunsError
from gage_runs.fsmode import make_dirs, writable_file_mode
from gage_runs.runs_dir import check_runs_dir, scan_runs
from gage_runs.staging import stage_op
from gage_runs.types import Run
from gage_worker.beat.schedule import Job, Schedule, load_job_op, load_schedule

log = logging.getLogger(__name__)

LOCK_POLL = 1.0  # seconds between tries of a held beat lock
MAX_SLEEP = 1.0  # the loop re-reads the clock at least this often


class BeatLockError(CommandFailed):
    """Another beat holds the schedule's lock (`--no-wait`), or it cannot be taken."""


def run_beat(schedule_path: str, settings: Settings, *, wait: bool = True,
             once: bool = False) -> int:
    """Run the beat until SIGTERM/SIGINT (or one pass with `once`); the exit status.

    The schedule and every job's op are checked first: any error is a
    ScheduleError. With `once`, the status is 1 if a tick logged an error.
    """
    schedule = load_schedule(schedule_path)
    runs_dir = check_runs_dir(settings.require_runs_dir(), writable=True)
    settings = settings.with_overrides(runs_dir=runs_dir)
    stop = threading.Event()
    with _stop_on_signals(stop), BeatLock(runs_dir, schedule.path) as lock:
        if not lock.try_acquire():
            if not wait:
                raise BeatLockError(
                    f"another beat ({lock.holder()}) runs schedule {schedule.path}"
                    f" (lock {lock.path})"
                )
            if not lock.wait(stop):
                return 0
            schedule = load_schedule(schedule_path)  # it may have changed meanwhile
        log.info(
            "beat: schedule %s, %d job(s), runs dir %s, broker %s",
            schedule.path, len(schedule.jobs), runs_dir, redact_url(broker_url(settings)),
        )
        return Beat(schedule, settings).loop(stop, once=once)


def configure_logging(loglevel: str) -> None:
    """Log `[time] LEVEL message` lines to stderr from `loglevel` up."""
    logging.basicConfig(
        level=loglevel.upper(), format="[%(asctime)s] %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


class BeatLock:
    """The lock that makes one beat per schedule file and runs dir."""

    def __init__(self, runs_dir: str, schedule_path: str):
        key = hashlib.sha1(os.path.realpath(schedule_path).encode()).hexdigest()
        self.path = beat_lock(runs_dir, key)
        self.schedule_path = schedule_path
        self._fd: int | None = None

    def __enter__(self) -> BeatLock:
        try:
            make_dirs(os.path.dirname(self.path))
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise BeatLockError(f"cannot open the beat lock {self.path}: {e.strerror}") from None
        with contextlib.suppress(PermissionError):
            os.fchmod(self._fd, writable_file_mode())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None

    def wait(self, stop: threading.Event) -> bool:
        """Wait for the lock, saying so once; False if `stop` was set first."""
        log.info(
            "beat: waiting: another beat (%s) runs schedule %s; taking over when it stops",
            self.holder(), self.schedule_path,
        )
        while not stop.wait(LOCK_POLL):
            if self.try_acquire():
                log.info("beat: took over schedule %s", self.schedule_path)
                return True
        return False

    def holder(self) -> str:
        """Who holds the lock, as its holder recorded it."""
        with open(self.path) as f:
            return f.read().strip() or "unknown"

    def try_acquire(self) -> bool:
        """Take the lock if it is free, and record who holds it."""
        assert self._fd is not None, "use BeatLock as a context manager"
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):  # held by another process
                return False
            raise BeatLockError(f"cannot lock {self.path}: {e.strerror}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"host {socket.gethostname()}, pid {os.getpid()}".encode(), 0)
        return True


@dataclass
class JobState:
    """A job's timing and its last run."""

    next_due: float
    last_tick: float | None = None
    last_run: Run | None = None


class Beat:
    """Ticks a schedule's jobs; holds no lock itself (see `run_beat`)."""

    def __init__(self, schedule: Schedule, settings: Settings):
        self.jobs = schedule.jobs
        self.settings = settings
        self.runs_dir = settings.require_runs_dir()
        self.states = self._recover(time.time())

    def loop(self, stop: threading.Event, *, once: bool = False) -> int:
        """Tick due jobs until `stop` is set (or once); 1 if `once` and a tick logged an error."""
        for job in self.jobs:
            log.info("%s: %s, next tick at %s", job.name, job.trigger,
                     _when(self.states[job.name].next_due))
        failed = False
        while not stop.is_set():
            for job in self.jobs:
                state = self.states[job.name]
                if stop.is_set() or state.next_due > time.time():
                    continue
                if not self._tick(job, state):
                    failed = True
            if once:
                return 1 if failed else 0
            delay = min(state.next_due for state in self.states.values()) - time.time()
            stop.wait(min(max(delay, 0.0), MAX_SLEEP))
        return 0

    def _recover(self, now: float) -> dict[str, JobState]:
        """Each job's last run and tick from the runs dir (`queue/submitted`).

        Runs are read newest first (`scan_runs`: no file opened to sort)
        until every job's last run is found, so a beat whose jobs ran
        recently reads a few runs, not the runs dir.
        """
        last: dict[str, tuple[float, Run]] = {}
        names = {job.name for job in self.jobs}
        for entry in scan_runs(self.runs_dir):
            if len(last) == len(names):
                break
            run = entry.load()
            submitted = (read_submitted(run) or {}) if run else {}
            name, submit_time = submitted.get("schedule"), submitted.get("time")
            if name not in names or not isinstance(submit_time, int):
                continue
            if name not in last or submit_time / 1e6 > last[name][0]:
                last[name] = (submit_time / 1e6, run)
        states = {}
        for job in self.jobs:
            if job.name not in last:
                states[job.name] = JobState(job.trigger.next_tick(None, now))
                continue
            tick, run = last[job.name]
            states[job.name] = JobState(job.trigger.next_tick(tick, now), tick, run)
            log.info("%s: last run %s, submitted %s", job.name, run.brief, _when(tick))
        return states

    def _tick(self, job: Job, state: JobState) -> bool:
        """Submit a run of `job` unless its last run is active; log it. False on an error."""
        state.last_tick = state.next_due
        ok, message = self._submit(job, state)
        state.next_due = job.trigger.next_tick(state.last_tick, time.time())
        level = logging.INFO if ok else logging.ERROR
        log.log(level, "%s: %s; next tick at %s", job.name, message, _when(state.next_due))
        return ok

    def _submit(self, job: Job, state: JobState) -> tuple[bool, str]:
        previous = state.last_run
        if previous is not None and not job.overlap:
            status = _status(previous)
            if status in OWED:
                return True, f"skipped: its last run {previous.brief} is {status}"
        try:
            op = load_job_op(job)
            depends = resolve_depends(op.opdef, op.opref, self.runs_dir, job.project_dir)
            run = stage_op(
                job.project_dir, op.opdef, op.opref, op.config, self.runs_dir, label=job.label
            )
            write_depends(run, depends.resolved)
        except (GageRunsError, OSError) as e:
            return False, f"error: no run submitted: {e}"
        state.last_run = run
        queue = job.queue or self.settings.queue
        try:
            submit_run(
                run, queue=queue, time_limit=job.time_limit, schedule=job.name,
                settings=self.settings,
                request=depends.applied_to(job.request),
            )
        except BrokerUnavailable as e:
            return False, f"error: run {run.brief} not sent: {e}"
        return True, f"submitted run {run.brief} to queue {queue}"


def _status(run: Run) -> RunState | None:
    """The run's queue status, or None if it was deleted."""
    if not os.path.isdir(run.meta_dir):
        return None
    return run_state(run)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM and SIGINT while in the block."""
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
