"""The run keeper: owns one run for exactly as long as any process of it lives.

Started fresh by the exec task (never forked from Celery), in its own
session and detached from the worker (`__main__`), the keeper:

1. takes the run lock and reads the run record through it (`lock`),
   and decides from the record alone what the delivery means (start,
   finalize owed, recover a lost run, nothing);
2. takes its parts' resources: this host's alive lock, a run slot or GPU;
3. commits `running`, then starts the command (`gage_runs.exec_run`) in
   its own process group with the run lock and slot inherited, writing
   `output/40_run` itself; the command dies with the keeper
   (`PR_SET_PDEATHSIG`);
4. ticks its parts (cancel, time limit, run files, shutdown); a stop sends
   SIGTERM to the group and to every descendant that left it, SIGKILL
   after the grace period (a preempted run's `--signal` comes first, within
   the grace: `_begin_stop`);
5. when the command exits, stops what it left behind (the keeper is a
   subreaper, so nothing escapes), waits for every process to exit,
   commits the exit code and the reason, and only then releases the lock.

Supervision fails closed: any error in steps 4-5 kills every process of
the run before anything is recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gage_queue.locks import LockFileMissing, RunLock, try_lock
from gage_queue.queue_meta import read_submitted
from gage_queue.record import RunRecord
from gage_queue.requests import DEFAULT_REQUEST, request_from
from gage_queue.states import (
    KILLED_EXIT,
    STOPPED_EXIT,
    EndReason,
    Event,
    RunState,
    before_start_words,
    exit_words,
)
from gage_queue.waiting import remove_placement, remove_waiting
from gage_runs.errors import GageRunsError, RunExecError
from gage_runs.execute import exec_run
from gage_runs.fsmode import walk_once
from gage_runs.meta import make_run_timestamp, meta_timestamp, run_meta_path, runner_log
from gage_runs.runs_dir import resolve_run_id
from gage_runs.types import Run
from gage_worker.keeper import procs
from gage_worker.keeper.depends import DependsPart
from gage_worker.keeper.job import KeeperJob, Outcome, Verdict
from gage_worker.keeper.parts import (
    CancelPart,
    HostPart,
    NotPlacedHere,
    Part,
    ResumePart,
    RunFilesPart,
    ShutdownPart,
    SlotPart,
    Stop,
    SubmittedFilesPart,
    TimeLimitPart,
    cancel_stop,
    deleted_stop,
)

AFTER_KILL_SECONDS = 5.0  # how long to wait for SIGKILLed processes to go
BUSY_WAIT = 1.0  # how long a keeper tries again for a run lock held by others
UNPLACED = {"placed_node": None, "placed_gpus": None, "placed_at": None}


@dataclass(frozen=True)
class KeeperProcess:
    """What a keeper knows of its own process before any job: prepared while a spare waits."""

    pid: int
    start_time: float | None  # against pid reuse (`procs.is_alive`)
    hostname: str
    base_env: dict[str, str]  # what the run's environment starts from

    @classmethod
    def here(cls) -> KeeperProcess:
        pid = os.getpid()
        return cls(pid, procs.process_start_time(pid), socket.gethostname(), dict(os.environ))


class Keeper:
    """One run's keeper; `keep()` does it all and says what the task must do.

    `on_started` is called once the run's command is running (never if it
    does not start): the launcher forks its next spare then, not while
    this keeper starts the run.
    """

    def __init__(self, job: KeeperJob, me: KeeperProcess,
                 on_started: Callable[[], None] | None = None):
        self.job = job
        self.me = me
        self._on_started = on_started
        self.run: Run = resolve_run_id(job.runs_dir, job.run_id)
        self.lock: RunLock
        self.slot = SlotPart()
        self.shutdown = ShutdownPart()
        self.time_limit = TimeLimitPart()
        self.parts: list[Part] = [
            self.shutdown, HostPart(), self.time_limit, self.slot, CancelPart(), RunFilesPart(),
            ResumePart(), SubmittedFilesPart(), DependsPart(),
        ]
        self.queued = RunRecord()  # the record it was given to start
        self.submitted: dict[str, Any] = {}  # `queue/submitted`, read once for every part
        self.request = DEFAULT_REQUEST  # the request recorded there, read once too
        self.started_at = 0.0
        self.stop: Stop | None = None
        self._stop_at = 0.0  # when the stop began (monotonic): SIGKILL a grace later
        self._term_at = 0.0  # when its SIGTERM is due (later than _stop_at after a warning)
        self._stop_signals: list[str] = []  # sent by the stop so far, in order
        self._exited_after = "SIGTERM"  # the stop's last signal before the command exited
        self._killed = False
        self._proc: subprocess.Popen | None = None
        self._running = RunRecord()

    def log(self, message: str) -> None:
        print(f"keeper {os.getpid()}: run {self.run.id}: {message}", file=sys.stderr, flush=True)

    def keep(self) -> Outcome:
        try:
            lock = self._lock()
        except LockFileMissing as e:
            return Outcome(Verdict.NOTHING, f"{e}; not touching it")
        if lock is None:
            return Outcome(Verdict.BUSY, "locked by another keeper or finalize")
        self.lock = lock
        with lock, walk_once():
            return self._decide(lock.record())

    def _lock(self) -> RunLock | None:
        """The run lock; held by others, tried again for BUSY_WAIT seconds: a placement pass,
        the cancel sweep or a release holds it for milliseconds, and a placed run whose
        keeper gave up would wait for its placement to go stale."""
        deadline = time.monotonic() + BUSY_WAIT
        while (lock := try_lock(self.run)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return lock

    def _decide(self, record: RunRecord) -> Outcome:
        if record.state is RunState.QUEUED:
            return self._start(record)
        if record.state is RunState.WAITING:
            return Outcome(Verdict.NOTHING, "waits for the runs it depends on")
        if record.state is RunState.RUNNING:  # the lock was free: nothing of it is alive
            return Outcome(Verdict.FINALIZE, "found lost; finalize recovers it")
        if record.state is RunState.FINALIZING:
            return Outcome(Verdict.FINALIZE, "exit recorded; finalize owed", record.exit_code)
        return Outcome(Verdict.NOTHING, f"already {record.state.value}")

    def _start(self, record: RunRecord) -> Outcome:
        if meta_timestamp(self.run, "started") is not None:
            return Outcome(Verdict.NOTHING, "started outside the queue (gage run); Gage's run")
        if meta_timestamp(self.run, "staged") is None:
            return Outcome(Verdict.NOTHING, "not staged; not running it")
        self.queued = record
        self.submitted = read_submitted(self.run) or {}
        self.request = request_from(self.submitted)
        try:
            stop = cancel_stop(self)
            if stop is None:
                for part in self.parts:
                    part.acquire(self)
        except NotPlacedHere as e:
            self._release_parts()
            return self._give_back(record, str(e))
        except GageRunsError as e:  # the run's own files are bad (a planted link, say)
            self._release_parts()
            return self._refuse(record, f"cannot start the run: {e}")
        except OSError as e:
            self._release_parts()
            return Outcome(Verdict.CANNOT_START, f"cannot take a run slot: {e}")
        if stop is not None:
            self._release_parts()
            self.lock.advance(record, Event.CANCEL, RunState.FINALIZING, exit_code=STOPPED_EXIT,
                         reason=stop.reason, detail=before_start_words(stop.detail),
                         ended=make_run_timestamp(), **UNPLACED)
            remove_waiting(self.job.runs_dir, self.run.id)
            return Outcome(Verdict.FINALIZE, stop.detail, STOPPED_EXIT)
        try:
            return self._execute(record)
        finally:
            self._release_parts()

    def _refuse(self, queued: RunRecord, why: str) -> Outcome:
        """End a run that can never start here or anywhere: error, exit 1."""
        running = self.lock.advance(queued, Event.START, RunState.RUNNING, host=self.me.hostname,
                               node=self.job.node, **UNPLACED)
        remove_waiting(self.job.runs_dir, self.run.id)
        self._record_exit(running, 1, EndReason.CANNOT_START, why)
        return Outcome(Verdict.FINALIZE, why, 1)

    def _give_back(self, queued: RunRecord, why: str) -> Outcome:
        """Not this node's to start now: clear the placement, the next pass places it again."""
        if queued.placed_node == self.job.node:
            self.lock.advance(queued, Event.PLACE, RunState.QUEUED, **UNPLACED)
            remove_placement(self.job.runs_dir, self.run.id)
        self.log(f"not started here: {why}")
        return Outcome(Verdict.NOTHING, f"not started here: {why}")

    def ends_by(self) -> int | None:
        """When its time limit ends the run (epoch µs), if it has one."""
        if self.time_limit.limit is None:
            return None
        return make_run_timestamp() + int(self.time_limit.limit * 1_000_000)

    def _execute(self, queued: RunRecord) -> Outcome:
        running = self._running = self.lock.advance(
            queued, Event.START, RunState.RUNNING, host=self.me.hostname, node=self.job.node,
            keeper_pid=self.me.pid, keeper_started=self.me.start_time,
            slot=self.slot.slot, gpus=list(self.slot.gpus) if self.job.gpus else None,
            started=make_run_timestamp(), **UNPLACED,
        )
        remove_placement(self.job.runs_dir, self.run.id)
        env = dict(self.me.base_env)
        for part in self.parts:
            part.env(self, env)
        inherited = [self.lock.fd, *(fd for part in self.parts for fd in part.fds(self))]
        self.started_at = time.monotonic()
        try:
            exit_code = self._exec(env, inherited)
        except _CannotStartHere as e:
            self._unstart(running, str(e))
            return Outcome(Verdict.CANNOT_START, str(e))
        except _BadRun as e:
            self._record_exit(self._running, 1, EndReason.CANNOT_START, str(e))
            return Outcome(Verdict.FINALIZE, str(e), 1)
        except BaseException as e:  # fail closed: nothing of the run survives its keeper's error
            self._kill_everything()
            if deleted := self._deletion():
                return Outcome(Verdict.DELETED, deleted.detail)
            with contextlib.suppress(OSError):
                os.remove(run_meta_path(self.run, "proc", "lock"))
            self._record_exit(self._running, KILLED_EXIT, EndReason.SUPERVISION_FAILED,
                              f"supervision failed: {type(e).__name__}: {e}")
            return Outcome(Verdict.FINALIZE, f"supervision failed: {e}", KILLED_EXIT)
        if deleted := self._deletion():
            return Outcome(Verdict.DELETED, deleted.detail)
        exit_code, reason, detail = self._verdict(exit_code)
        self._record_exit(self._running, exit_code, reason, detail)
        return Outcome(Verdict.FINALIZE, detail, exit_code)

    def _deletion(self) -> Stop | None:
        """The stop if the run was deleted while it ran: nothing is left to record anything in.

        Also when the command ended first (it may have failed because its
        files went away) and the deletion was not yet seen by a tick.
        """
        if self.stop is None:
            return deleted_stop(self)
        return self.stop if self.stop.reason is None else None

    def _exec(self, env: dict[str, str], inherited: list[int]) -> int:
        prefix, options = procs.dying_with_parent()
        try:
            exec_run(self.run, base_env=env, watcher=self,
                     popen_options={"pass_fds": inherited, **options}, argv_prefix=prefix)
        except RunExecError as e:  # the command failed, or could not be found (127)
            return e.exit_code
        except OSError as e:
            if self._proc is None:  # this host's fault (disk, permissions): not the run's
                raise _CannotStartHere(f"cannot start the run: {e}") from None
            raise
        except GageRunsError as e:
            if self._proc is None:  # the run's own files are bad: it can never start
                raise _BadRun(f"cannot start the run: {e}") from None
            raise
        return 0

    def _verdict(self, exit_code: int) -> tuple[int, EndReason, str]:
        if self.stop is not None and self.stop.reason is not None:
            detail = self.stop.detail
            if exit_code >= 0:
                detail += f" (it exited {exit_code} after {self._exited_after})"
                exit_code = STOPPED_EXIT
            return exit_code, self.stop.reason, detail
        reason = EndReason.COMPLETED if exit_code == 0 else EndReason.FAILED
        return exit_code, reason, exit_words(exit_code)

    # -- the phase watcher: gage_runs calls these around the command ----------

    def started(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self._running = self._running.but(pid=proc.pid)
        self.lock.commit(self._running, durable=False)
        with contextlib.suppress(OSError):
            remove_waiting(self.job.runs_dir, self.run.id)
        if self._on_started is not None:
            self._on_started()
        self.tick(proc)

    def tick(self, proc: subprocess.Popen) -> None:
        now = time.monotonic()
        if self.stop is None:
            for part in self.parts:
                stop = part.tick(self, now)
                if stop is not None:
                    self._begin_stop(proc, stop)
                    break
        elif not self._killed:
            if "SIGTERM" not in self._stop_signals and now >= self._term_at:
                self._terminate(proc)
            if now - self._stop_at >= self.job.grace:
                self._kill_everything(
                    f"still running {self.job.grace:g} s after {self._stop_signals[0]}")

    def finished(self, proc: subprocess.Popen, exit_code: int) -> None:
        """The command exited: stop what it left, wait for every process to go."""
        if self.stop is not None and not self._killed:
            self._exited_after = self._stop_signals[-1] if self._stop_signals else "SIGTERM"
            if "SIGTERM" not in self._stop_signals:  # it exited on the warning
                self._stop_signals.append("SIGTERM")
                procs.signal_all(procs.descendants(), signal.SIGTERM)
            deadline = self._stop_at + self.job.grace
            while procs.alive_descendants(keep=proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._kill_everything()

    def warn(self, sig: int, when: str) -> None:
        """Send `sig` to the run's processes (`--signal`), once, and note it."""
        if self._proc is None:
            return
        self._note(f"sending {signal.Signals(sig).name} to the run's processes, {when}")
        _signal_run(self._proc.pid, sig)

    def _begin_stop(self, proc: subprocess.Popen, stop: Stop) -> None:
        """SIGTERM now and SIGKILL after the grace; a preempted run with `--signal SIG@LEAD`
        (its warning not sent yet) gets SIG now, SIGTERM min(LEAD, half the grace) later
        and SIGKILL at the same grace: the warning comes out of the grace, not on top."""
        self.stop = stop
        self._stop_at = self._term_at = time.monotonic()
        warning = self.time_limit.take_warning() if stop.reason is EndReason.PREEMPTED else None
        if warning is not None:
            lead = min(warning.before, self.job.grace / 2)
            self._stop_signals.append(warning.signal)
            self.warn(getattr(signal, warning.signal), f"{stop.detail}: SIGTERM in {lead:g} s")
            self._term_at += lead
            if lead > 0:
                return
        self._terminate(proc)

    def _terminate(self, proc: subprocess.Popen) -> None:
        assert self.stop is not None
        self._stop_signals.append("SIGTERM")
        self._note(f"{self.stop.detail}: sending SIGTERM to the run's processes")
        _signal_run(proc.pid, signal.SIGTERM)

    def _kill_everything(self, why: str | None = None) -> None:
        """SIGKILL every process of the run and wait until they are gone."""
        if why:
            self._note(f"{why}: sending SIGKILL to the run's processes")
        if self._proc is not None:
            procs.signal_group(self._proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + AFTER_KILL_SECONDS
        while True:
            command = None
            if self._proc is not None:
                self._proc.poll()  # Popen reaps the command and keeps its exit status
                command = self._proc.pid
            alive = procs.alive_descendants(keep=command)
            if not alive:
                break
            procs.signal_all(alive, signal.SIGKILL)
            if time.monotonic() > deadline:
                self.log(f"processes {alive} survive SIGKILL; releasing the run anyway")
                break
            time.sleep(0.02)
        self._killed = self._killed or why is not None

    def _note(self, message: str) -> None:
        self.log(message)
        with contextlib.suppress(OSError):
            runner_log(self.run, message)

    # -- records ---------------------------------------------------------------

    def _record_exit(self, running: RunRecord, exit_code: int, reason: EndReason,
                     detail: str) -> None:
        self.lock.advance(running, Event.EXIT, RunState.FINALIZING, exit_code=exit_code,
                     reason=reason, detail=detail, ended=make_run_timestamp())
        self.log(f"exited {exit_code}: {detail}")

    def _unstart(self, running: RunRecord, why: str) -> None:
        """Back to queued: the command never started (this host's fault, not the run's)."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(run_meta_path(self.run, "started"))
        self.lock.advance(running, Event.NOT_STARTED, RunState.QUEUED, host=None, node=None,
                     keeper_pid=None, keeper_started=None, slot=None, gpus=None, started=None)
        self.log(f"not started, left queued: {why}")

    def _release_parts(self) -> None:
        for part in reversed(self.parts):
            with contextlib.suppress(OSError):
                part.release(self)


def _signal_run(pgid: int, sig: int) -> None:
    """`sig` to the run's process group and to each descendant that left it: once each (a
    handler run twice for one SIGTERM could save a checkpoint twice, or take it as a
    second Ctrl-C)."""
    procs.signal_group(pgid, sig)
    procs.signal_all([pid for pid in procs.descendants() if _pgid(pid) != pgid], sig)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:  # gone
        return None


class _CannotStartHere(Exception):
    """The command could not be started here; nothing of the run ran."""


class _BadRun(Exception):
    """The run's own files say it can never start."""

